// The FlatBuffers half of common/collection_spec.h (in mrl_wire, which has the schemas).
#include "common/collection_spec.h"

#include "schemas/shard_generated.h"

namespace mrl {

wire::CollectionSpecT CollectionSpecToWire(const CollectionSpec& s) {
  wire::CollectionSpecT w;
  w.name = s.name;
  w.dim = s.dim;
  w.nesting = s.nesting;
  w.metric = static_cast<wire::Metric>(s.metric);
  w.storage = static_cast<wire::StorageType>(s.storage);
  w.num_buckets = s.num_buckets;
  for (const IndexSpec& i : s.indexes) {
    auto is = std::make_unique<wire::IndexSpecT>();
    is->dims = i.dims;
    is->kind = static_cast<wire::IndexKind>(i.kind);
    is->hnsw_m = i.hnsw_m;
    is->ef_construction = i.ef_construction;
    is->ef_search = i.ef_search;
    is->int8 = i.int8;
    w.indexes.push_back(std::move(is));
  }
  w.max_payload_bytes = s.max_payload_bytes;
  return w;
}

Result<CollectionSpec> CollectionSpecFromWire(const wire::CollectionSpec& w) {
  CollectionSpec s;
  if (w.name()) s.name.assign(w.name()->data(), w.name()->size());
  s.dim = w.dim();
  if (w.nesting()) s.nesting.assign(w.nesting()->begin(), w.nesting()->end());
  s.metric = static_cast<Metric>(w.metric());
  s.storage = static_cast<StorageType>(w.storage());
  s.num_buckets = w.num_buckets();
  if (w.indexes()) {
    for (const wire::IndexSpec* i : *w.indexes()) {
      IndexSpec is;
      is.dims = i->dims();
      is.kind = static_cast<IndexKind>(i->kind());
      is.hnsw_m = i->hnsw_m();
      is.ef_construction = i->ef_construction();
      is.ef_search = i->ef_search();
      is.int8 = i->int8();
      s.indexes.push_back(is);
    }
  }
  s.max_payload_bytes = w.max_payload_bytes();
  MRL_RETURN_IF_ERROR(ValidateCollectionSpec(s));
  return s;
}

}  // namespace mrl
