#!/usr/bin/env node
/**
 * `npx edgetune ...`: the command line on the SDK. See `edgetune --help` and docs/sdk.md.
 */
import { main } from "./main.js";

const code = await main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  onInterrupt: (handler) => {
    process.once("SIGINT", handler);
    return () => process.removeListener("SIGINT", handler);
  },
});
process.exitCode = code;
