/**
 * `client.fineTunes.checkpoints`: a job's stored checkpoints (docs/api.md "Checkpoints, pause
 * and resume").
 */
import type { Checkpoint, CheckpointList } from "../schema/checkpoint.js";
import type { APIClient, RequestOptions } from "./core.js";

/**
 * The checkpoints of a fine-tune: saved every `training.checkpoints.every` epochs (and when a job
 * is paused), the newest `keep` kept. Continue from one with `from_checkpoint: { job, epoch }`.
 *
 * @example
 * ```ts
 * const [last] = (await client.fineTunes.checkpoints.list(id)).slice(-1);
 * await writeFile(`epoch-${last.epoch}.safetensors`, await client.fineTunes.checkpoints.weights(id, last.epoch));
 * ```
 */
export class FineTuneCheckpoints {
  constructor(private readonly client: APIClient) {}

  /**
   * The job's stored checkpoints, oldest first: `{ epoch, step, metrics, created_at }`.
   *
   * @example
   * ```ts
   * for (const c of await client.fineTunes.checkpoints.list(id)) console.log(c.epoch, c.metrics.train_loss);
   * ```
   */
  async list(id: string, options?: RequestOptions): Promise<Checkpoint[]> {
    const { data } = await this.client.requestJSON<CheckpointList>({ method: "GET", path: `/v1/fine-tunes/${encodeURIComponent(id)}/checkpoints`, retryable: true }, options);
    return data.data;
  }

  /**
   * One checkpoint's weights: safetensors bytes (float32) with the model's state_dict names. An
   * epoch without a checkpoint answers `NotFoundError`.
   *
   * @example
   * ```ts
   * await writeFile("epoch-4.safetensors", await client.fineTunes.checkpoints.weights(id, 4));
   * ```
   */
  async weights(id: string, epoch: number, options?: RequestOptions): Promise<Uint8Array> {
    return this.client.requestBytes(
      { method: "GET", path: `/v1/fine-tunes/${encodeURIComponent(id)}/checkpoints/${epoch}/weights`, retryable: true, accept: "application/octet-stream" },
      options,
    );
  }
}
