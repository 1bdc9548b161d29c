/**
 * Cursor pagination: `list()` answers a thenable that is also an async iterator over every job
 * of every page.
 */
import type { JobList, JobSummary } from "../schema/job.js";

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
export class JobListPromise implements Promise<JobList>, AsyncIterable<JobSummary> {
  readonly [Symbol.toStringTag] = "JobListPromise";
  private first: Promise<JobList> | null = null;

  constructor(
    private readonly fetchPage: (cursor: string | undefined) => Promise<JobList>,
    private readonly cursor: string | undefined,
  ) {}

  private firstPage(): Promise<JobList> {
    this.first ??= this.fetchPage(this.cursor);
    return this.first;
  }

  then<A = JobList, B = never>(onfulfilled?: ((value: JobList) => A | PromiseLike<A>) | null, onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null): Promise<A | B> {
    return this.firstPage().then(onfulfilled, onrejected);
  }

  catch<B = never>(onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null): Promise<JobList | B> {
    return this.firstPage().catch(onrejected);
  }

  finally(onfinally?: (() => void) | null): Promise<JobList> {
    return this.firstPage().finally(onfinally);
  }

  /** Every page, starting with the first, until `next_cursor` is null. */
  async *pages(): AsyncGenerator<JobList> {
    let page = await this.firstPage();
    for (;;) {
      yield page;
      if (page.next_cursor === null || page.data.length === 0) return;
      page = await this.fetchPage(page.next_cursor);
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<JobSummary> {
    for await (const page of this.pages()) yield* page.data;
  }
}
