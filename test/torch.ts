/**
 * Whether /usr/bin/python3 has PyTorch (Debian's python3-torch): the tests that need it say so
 * when it has not. Not in helpers.ts, which the Worker tests import inside workerd, where
 * node:child_process is not to be loaded (workerd crashed at start-up when it was).
 */
import { execFileSync } from "node:child_process";

export const torchAvailable = (() => {
  try {
    execFileSync("/usr/bin/python3", ["-c", "import torch"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();
