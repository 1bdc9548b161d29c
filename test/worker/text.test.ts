/**
 * Tokenizers inside workerd: @huggingface/tokenizers (formats/text.ts) loads and tokenizes with
 * the runtime's own RegExp, Unicode normalization and TextEncoder, and a sync fine-tune on text
 * rows runs through the real Worker.
 */
import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { loadTokenizer } from "../../src/formats/text.js";
import tinyWordPiece from "../fixtures/tokenizers/tiny-wordpiece.json";
import tinyGpt2 from "../fixtures/tokenizers/tiny-gpt2.json";
import tinyLlama from "../fixtures/tokenizers/tiny-llama.json";

const auth = { authorization: "Bearer worker-test-key" };

describe("tokenizers in workerd", () => {
  it("WordPiece with BertNormalizer (NFD accent stripping), byte-level BPE and byte fallback give the ids they give in Node", () => {
    const vocab = tinyWordPiece.model.vocab as Record<string, number>;
    const bert = loadTokenizer(tinyWordPiece);
    expect(bert.encode("Café, playing!").ids).toEqual(["[CLS]", "cafe", ",", "play", "##ing", "!", "[SEP]"].map((t) => vocab[t]));
    // GPT-2's own ids (tiny-gpt2 keeps GPT-2's first 256 merges): " the" is 262 in GPT-2
    const gpt2 = loadTokenizer(tinyGpt2);
    expect(gpt2.encode("<|endoftext|>").ids).toEqual([512]);
    expect(gpt2.encode(" the").ids).toEqual([262]);
    const llama = loadTokenizer(tinyLlama);
    expect(llama.encode("H").ids).toEqual([1, (tinyLlama.model.vocab as Record<string, number>)["▁"], 3 + 0x48]);
  });

  it("a sync fine-tune on text rows with a tokenizer runs in the Worker", async () => {
    const vocabSize = Object.keys(tinyWordPiece.model.vocab).length;
    const body = {
      model: {
        layers: [
          { type: "embedding", name: "emb", num_embeddings: vocabSize, embedding_dim: 8, padding_idx: 0 },
          { type: "pool", mode: "mean" },
          { type: "linear", name: "head", in_features: 8, out_features: 2 },
        ],
      },
      tokenizer: tinyWordPiece,
      data: { train: { text: ["good movie", "great film!", "bad movie.", "awful, awful film"], label: [1, 1, 0, 0] }, tokenization: { padding: "max_length", max_length: 8 } },
      training: { epochs: 3, batch_size: 2, loss: { type: "cross_entropy" }, optimizer: { type: "adam", lr: 0.01 } },
      mode: "sync",
    };
    const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes", { method: "POST", headers: { "content-type": "application/json", ...auth }, body: JSON.stringify(body) });
    expect(res.status).toBe(200);
    const result = (await res.json()) as { status: string; engine: { runtime: string }; metrics: { history: { train_loss: number }[] } };
    expect(result).toMatchObject({ status: "succeeded", engine: { runtime: "workerd" } });
    expect(result.metrics.history).toHaveLength(3);
  });
});
