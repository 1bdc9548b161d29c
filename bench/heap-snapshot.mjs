// What an isolate's ArrayBuffers are, from a V8 heap snapshot (HeapProfiler.takeHeapSnapshot over
// the inspector, or v8.writeHeapSnapshot in Node). Why a snapshot: under workerd,
// Runtime.getHeapUsage's backingStorageSize leaves out WebAssembly memories, and
// HeapProfiler.collectGarbage is not answered (nor, it appears, acted on), so a reading after it
// can still count ArrayBuffers that are garbage. Taking a snapshot collects the garbage first,
// and its graph holds every live ArrayBuffer's bytes ("system / JSArrayBufferData" nodes), WASM
// memories included (the ArrayBuffer a WebAssembly.Memory object holds).

const MIB = 2 ** 20;

/**
 * The live ArrayBuffer bytes of a heap snapshot: those of WebAssembly memories and the others,
 * and the largest buffers (of `minBytes` or more) with the path that retains each (from the
 * snapshot's root).
 *
 * @example
 * ```js
 * const { wasmBytes, otherBytes, largest } = snapshotArrayBuffers(text, { largest: 5, minBytes: 2 ** 20 });
 * ```
 */
export function snapshotArrayBuffers(text, { largest = 5, minBytes = 0 } = {}) {
  const snap = JSON.parse(text);
  const meta = snap.snapshot.meta;
  const nf = meta.node_fields.length;
  const ef = meta.edge_fields.length;
  const nodeTypes = meta.node_types[0];
  const edgeTypes = meta.edge_types[0];
  const [iType, iName, iSize, iEdges] = ["type", "name", "self_size", "edge_count"].map((f) => meta.node_fields.indexOf(f));
  const [eType, eName, eTo] = ["type", "name_or_index", "to_node"].map((f) => meta.edge_fields.indexOf(f));
  const { nodes, edges, strings } = snap;
  const count = nodes.length / nf;
  const nameOf = (i) => String(strings[nodes[i * nf + iName]]);
  // retainers of each node (strong edges only), and each node's distance from the root
  const firstEdge = new Uint32Array(count + 1);
  for (let i = 0, e = 0; i < count; i++) (firstEdge[i] = e), (e += nodes[i * nf + iEdges] * ef), (firstEdge[i + 1] = e);
  const retainers = Array.from({ length: count }, () => []);
  const depth = new Int32Array(count).fill(-1);
  for (let i = 0; i < count; i++) {
    for (let e = firstEdge[i]; e < firstEdge[i + 1]; e += ef) {
      const type = edgeTypes[edges[e + eType]];
      if (type === "weak") continue;
      const label = type === "element" || type === "hidden" ? `[${edges[e + eName]}]` : String(strings[edges[e + eName]]);
      retainers[edges[e + eTo] / nf].push({ from: i, label });
    }
  }
  depth[0] = 0;
  const queue = [0];
  for (let h = 0; h < queue.length; h++) {
    const i = queue[h];
    for (let e = firstEdge[i]; e < firstEdge[i + 1]; e += ef) {
      if (edgeTypes[edges[e + eType]] === "weak") continue;
      const to = edges[e + eTo] / nf;
      if (depth[to] < 0) (depth[to] = depth[i] + 1), queue.push(to);
    }
  }
  const pathTo = (i) => {
    const steps = [];
    for (let at = i; at !== 0 && steps.length < 12; ) {
      const up = retainers[at].filter((r) => depth[r.from] >= 0 && depth[r.from] < depth[at]).sort((a, b) => depth[a.from] - depth[b.from])[0];
      if (!up) break;
      steps.push(`${nameOf(up.from).slice(0, 40)}.${up.label}`);
      at = up.from;
    }
    return steps.reverse().join(" -> ");
  };
  let wasmBytes = 0;
  let otherBytes = 0;
  const found = [];
  for (let i = 0; i < count; i++) {
    if (nodeTypes[nodes[i * nf + iType]] !== "native" || nameOf(i) !== "system / JSArrayBufferData") continue;
    const bytes = nodes[i * nf + iSize];
    // JSArrayBufferData <- ArrayBuffer <- Memory (a WebAssembly.Memory's buffer)
    const wasm = retainers[i].some((b) => retainers[b.from].some((r) => nameOf(r.from) === "Memory" && nodeTypes[nodes[r.from * nf + iType]] === "object"));
    if (wasm) wasmBytes += bytes;
    else otherBytes += bytes;
    found.push({ i, bytes, wasm });
  }
  found.sort((a, b) => b.bytes - a.bytes);
  return {
    wasmBytes,
    otherBytes,
    buffers: found.length,
    largest: found.filter((b) => b.bytes >= minBytes).slice(0, largest).map(({ i, bytes, wasm }) => ({ mib: +(bytes / MIB).toFixed(2), wasm, retainedBy: pathTo(i) })),
  };
}
