/** One build of the package: its npm script, what it reads and what it writes (relative to the root). */
export interface BuildSpec {
  script: string;
  inputs: string[];
  outputs: string[];
}
/** The builds a GPU node needs: build:wasm and build:ts. */
export const NODE_BUILDS: BuildSpec[];
/** The npm scripts whose outputs are missing or older than their sources, in build order. */
export function staleBuilds(root: string, builds?: BuildSpec[]): string[];
