// mrlctl ingest: upserts an embeddings .npy (optionally with ids, labels and images, stored as
// payload {"label": L, "image_png": base64 PNG}) into a collection, creating it first when asked. Over the coordinator's binary
// API when its address is known (raw floats, up to 4 batches in flight), else HTTP/JSON.
// Progress every 20 batches.
#pragma once

#include <string>

#include "common/status.h"
#include "ops/http_client.h"

namespace mrl::ops {

struct IngestArgs {
  std::string collection = "embeddings";
  std::string embeddings, ids, labels;  // .npy paths; ids default to row numbers
  // .npy of uint8 images [n, H, W] (gray) or [n, H, W, 3] (RGB), row i the image of embedding
  // i: each stored as a PNG in the payload (the web console shows results as pictures).
  std::string images;
  std::string binary;                   // "host:port" of the binary API; empty: HTTP
  int batch = 500;
  bool create = false;           // PUT the collection first
  int index_dims = 16;           // with create: the low-d HNSW prefix
  bool index_int8 = false;       // with create: its vectors as int8
  std::string storage = "fp16";  // with create
  uint32_t num_buckets = 0;      // with create: buckets (a power of two); 0: the coordinator's
};

// Fails on the first batch not acknowledged, naming its row.
Status Ingest(HttpClient& http, const IngestArgs& args);

}  // namespace mrl::ops
