import { it } from "vitest";
import { testApp } from "../api/app.js";
it("dbg", async () => {
  const { app } = await testApp({ maxBodyBytes: 1 << 20 });
  const body = `{"x":"${"a".repeat(1 << 20)}"}`;
  const t = async (name: string, init: RequestInit) => {
    const started = Date.now();
    const r = await Promise.race([app.request("/v1/fine-tunes", init), new Promise<string>((res) => setTimeout(() => res("TIMEOUT"), 3000))]);
    console.log(name, typeof r === "string" ? r : r.status, Date.now() - started);
  };
  await t("json", { method: "POST", body, headers: { "content-type": "application/json" } });
  await t("stream", { method: "POST", body: new Blob([body]).stream(), headers: { "content-type": "application/json" }, duplex: "half" } as RequestInit);
  const form = new FormData(); form.append("request", "{}"); form.append("train", new Blob([body]), "train.csv");
  await t("form", { method: "POST", body: form });
  const small = new FormData(); small.append("request", "{}"); small.append("train", new Blob(["a,y\n1,2\n"]), "train.csv");
  await t("form small", { method: "POST", body: small });
});
