/**
 * Cursor pagination: `list()` and `metrics()` answer a thenable that is also an async iterator
 * over every item of every page.
 */
import type { JobList, JobSummary, MetricsPage } from "../schema/job.js";
import type { EpochMetrics } from "../schema/result.js";

/**
 * A cursor-paginated answer: `await` it for the first page, `for await` over it for every item
 * of every page (fetched as the loop needs them), `.pages()` for the pages.
 *
 * @example
 * ```ts
 * const first = await client.fineTunes.metrics(id);         // { object: "list", data, next_cursor }
 * for await (const epoch of client.fineTunes.metrics(id)) console.log(epoch.epoch, epoch.train_loss);
 * ```
 */
export class PagePromise<Item, Page extends { data: Item[]; next_cursor: string | null }> implements Promise<Page>, AsyncIterable<Item> {
  readonly [Symbol.toStringTag]: string = "PagePromise";
  private first: Promise<Page> | null = null;

  constructor(
    private readonly fetchPage: (cursor: string | undefined) => Promise<Page>,
    private readonly cursor: string | undefined,
  ) {}

  private firstPage(): Promise<Page> {
    this.first ??= this.fetchPage(this.cursor);
    return this.first;
  }

  then<A = Page, B = never>(onfulfilled?: ((value: Page) => A | PromiseLike<A>) | null, onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null): Promise<A | B> {
    return this.firstPage().then(onfulfilled, onrejected);
  }

  catch<B = never>(onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null): Promise<Page | B> {
    return this.firstPage().catch(onrejected);
  }

  finally(onfinally?: (() => void) | null): Promise<Page> {
    return this.firstPage().finally(onfinally);
  }

  /** Every page, starting with the first, until `next_cursor` is null. */
  async *pages(): AsyncGenerator<Page> {
    let page = await this.firstPage();
    for (;;) {
      yield page;
      if (page.next_cursor === null || page.data.length === 0) return;
      page = await this.fetchPage(page.next_cursor);
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Item> {
    for await (const page of this.pages()) yield* page.data;
  }
}

/**
 * The answer of `client.fineTunes.metrics(id)`: a job's whole per-epoch history, oldest first,
 * a page at a time (the job itself keeps only its last 100 epochs).
 *
 * @example
 * ```ts
 * const losses: number[] = [];
 * for await (const epoch of client.fineTunes.metrics(id, { limit: 1000 })) losses.push(epoch.train_loss);
 * ```
 */
export class MetricsPagePromise extends PagePromise<EpochMetrics, MetricsPage> {
  override readonly [Symbol.toStringTag] = "MetricsPagePromise";
}

/**
 * The answer of `client.fineTunes.list()`: `await` it for one page, or `for await` over it for
 * every job of every page (newest first), fetching pages as the loop needs them.
 *
 * @example
 * ```ts
 * const page = await client.fineTunes.list({ limit: 10 });   // { object: "list", data, next_cursor }
 * for await (const job of client.fineTunes.list()) console.log(job.id, job.status);
 * for await (const page of client.fineTunes.list().pages()) console.log(page.data.length);
 * ```
 */
export class JobListPromise extends PagePromise<JobSummary, JobList> {
  override readonly [Symbol.toStringTag] = "JobListPromise";
}
