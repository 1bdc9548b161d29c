/** Workers import .wasm files as compiled modules (wrangler's CompiledWasm rule). */
declare module "*.wasm" {
  const module: WebAssembly.Module;
  export default module;
}

/**
 * Secrets, and the vars that must never be deployed by default, are not in wrangler.toml, so
 * `wrangler types` cannot see them.
 */
declare namespace Cloudflare {
  interface Env {
    /** Comma-separated API keys; unset = 503 (open only with EDGETUNE_DEV or EDGETUNE_ALLOW_OPEN). */
    EDGETUNE_API_KEYS?: string;
    /** Comma-separated GPU-node tokens; unset = the development token with EDGETUNE_DEV, else none. */
    EDGETUNE_NODE_TOKENS?: string;
    /** "true" marks local development (`npm run dev`, .dev.vars): the development node token and an open API. */
    EDGETUNE_DEV?: string;
    /** "true" serves an open API on purpose when EDGETUNE_API_KEYS is not set. */
    EDGETUNE_ALLOW_OPEN?: string;
  }
}
