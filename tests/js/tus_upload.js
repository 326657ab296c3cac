// Upload a file to filedock with tus-js-client, as a browser app or Node tool would.
// usage: node tus_upload.js ENDPOINT FILE TARGET_PATH CHUNK_BYTES [--stop-after N] [--resume URL]
//        [--with-creation-upload]
// Prints one JSON line: {"event": "success"|"stopped"|"error", "url": ..., "offset": ...};
// an error also says the status of the answer that failed and how many requests were sent.
"use strict";
const fs = require("fs");
const tus = require("tus-js-client");

const [endpoint, file, target, chunkArg, ...rest] = process.argv.slice(2);
const option = (name) => {
  const i = rest.indexOf(name);
  return i >= 0 ? rest[i + 1] : undefined;
};
const stopAfter = option("--stop-after") ? Number(option("--stop-after")) : 0;
const resumeUrl = option("--resume");
const data = fs.readFileSync(file);
let chunks = 0;
let requests = 0;
const print = (value) => process.stdout.write(JSON.stringify(value) + "\n");

const upload = new tus.Upload(data, {
  endpoint,
  uploadUrl: resumeUrl, // resume: tus-js-client asks the server for the offset (HEAD) and goes on
  chunkSize: Number(chunkArg),
  metadata: { path: target, filetype: "application/octet-stream" },
  uploadDataDuringCreation: rest.includes("--with-creation-upload"),
  retryDelays: [200, 500],
  onBeforeRequest() {
    requests += 1;
  },
  onChunkComplete(chunkSize, accepted, total) {
    chunks += 1;
    if (stopAfter && chunks === stopAfter) {
      upload.abort().then(() => print({ event: "stopped", url: upload.url, offset: accepted }));
    }
  },
  onSuccess() {
    print({ event: "success", url: upload.url, offset: data.length });
  },
  onError(error) {
    const response = error.originalResponse;
    const status = response ? response.getStatus() : null;
    print({ event: "error", message: String(error), status, requests });
    process.exitCode = 1;
  },
});
upload.start();
