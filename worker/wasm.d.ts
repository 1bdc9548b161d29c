/** Workers import .wasm files as compiled modules (wrangler's CompiledWasm rule). */
declare module "*.wasm" {
  const module: WebAssembly.Module;
  export default module;
}

/** Secrets are not in wrangler.toml, so `wrangler types` cannot see them. */
declare namespace Cloudflare {
  interface Env {
    /** Comma-separated API keys; unset = open API. */
    EDGETUNE_API_KEYS?: string;
    /** Comma-separated GPU-node tokens; unset = the development token. */
    EDGETUNE_NODE_TOKENS?: string;
  }
}
