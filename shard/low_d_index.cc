// hnswlib's headers define non-inline functions, so this must be the only translation unit of
// the project that includes them.
#include "shard/low_d_index.h"

// hnswlib's SSE paths prefetch one list entry past the end of a full link list (a heap
// over-read that ASan reports); its SIMD distances are not used here anyway (see PrefixSpace).
#define NO_MANUAL_VECTORIZATION
#include <fcntl.h>
#include <hnswlib/hnswlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

#include "common/atomic_file.h"
#include "common/distance.h"
#include "common/vector_codec.h"
#include "shard/index_checksum.h"

namespace mrl::shard {

void TopK::Reset(size_t k, std::vector<Candidate>* heap) {
  k_ = k;
  heap_ = heap;
  heap_->clear();
  if (heap_->capacity() < k) heap_->reserve(k);
}

void TopK::Push(uint64_t id, float score) {
  if (k_ == 0) return;
  const Candidate c{id, score};
  if (heap_->size() < k_) {
    heap_->push_back(c);
    std::push_heap(heap_->begin(), heap_->end(), BetterCandidate);
  } else if (BetterCandidate(c, heap_->front())) {
    std::pop_heap(heap_->begin(), heap_->end(), BetterCandidate);
    heap_->back() = c;
    std::push_heap(heap_->begin(), heap_->end(), BetterCandidate);
  }
}

void TopK::Finish() { std::sort_heap(heap_->begin(), heap_->end(), BetterCandidate); }

namespace {

inline float Score(IndexMetric metric, const float* a, const float* b, size_t n) {
  return metric == IndexMetric::kL2 ? -L2Sq(a, b, n) : Dot(a, b, n);
}

// ---- Exact ----------------------------------------------------------------------------------

constexpr char kExactMagic[8] = {'M', 'R', 'L', 'E', 'X', 'C', 'T', '1'};

class ExactIndex final : public LowDIndex {
 public:
  ExactIndex(int32_t dims, IndexMetric metric, size_t capacity) : dims_(dims), metric_(metric) {
    ids_.reserve(capacity);
    data_.reserve(capacity * static_cast<size_t>(dims));
  }

  int32_t dims() const override { return dims_; }
  IndexKind kind() const override { return IndexKind::kExact; }

  void Upsert(uint64_t id, const float* v) override {
    std::unique_lock lock(mu_);
    auto [it, inserted] = slot_.try_emplace(id, static_cast<uint32_t>(ids_.size()));
    if (inserted) {
      ids_.push_back(id);
      data_.insert(data_.end(), v, v + dims_);
    } else {
      std::memcpy(&data_[static_cast<size_t>(it->second) * dims_], v, sizeof(float) * dims_);
    }
  }

  void AddBulk(std::span<const uint64_t> ids, const float* vectors, int /*threads*/) override {
    for (size_t i = 0; i < ids.size(); ++i) Upsert(ids[i], vectors + i * dims_);
  }

  bool Remove(uint64_t id) override {
    std::unique_lock lock(mu_);
    auto it = slot_.find(id);
    if (it == slot_.end()) return false;
    const uint32_t slot = it->second;
    const uint32_t last = static_cast<uint32_t>(ids_.size() - 1);
    if (slot != last) {  // move the last row into the hole
      ids_[slot] = ids_[last];
      std::memcpy(&data_[static_cast<size_t>(slot) * dims_],
                  &data_[static_cast<size_t>(last) * dims_], sizeof(float) * dims_);
      slot_[ids_[slot]] = slot;
    }
    ids_.pop_back();
    data_.resize(data_.size() - dims_);
    slot_.erase(it);
    return true;
  }

  bool Contains(uint64_t id) const override {
    std::shared_lock lock(mu_);
    return slot_.count(id) > 0;
  }

  void Search(const float* query, int32_t k, int32_t /*ef*/, bool /*exact*/,
              std::vector<Candidate>* out) const override {
    std::shared_lock lock(mu_);
    TopK top;
    top.Reset(static_cast<size_t>(k), out);
    const size_t n = ids_.size();
    const float* row = data_.data();
    for (size_t i = 0; i < n; ++i, row += dims_) {
      top.Push(ids_[i], Score(metric_, query, row, dims_));
    }
    top.Finish();
  }

  uint64_t size() const override {
    std::shared_lock lock(mu_);
    return ids_.size();
  }

  uint64_t memory_bytes() const override {
    std::shared_lock lock(mu_);
    // rows + ids + hash map nodes (key, value, next pointer, hash) + bucket array
    return data_.capacity() * sizeof(float) + ids_.capacity() * sizeof(uint64_t) +
           slot_.size() * 32 + slot_.bucket_count() * sizeof(void*);
  }

  Status Save(const std::string& path) const override {
    std::shared_lock lock(mu_);
    std::string buf;
    const uint64_t n = ids_.size();
    buf.reserve(8 + 16 + n * 8 + data_.size() * 4);
    buf.append(kExactMagic, 8);
    const uint32_t dims = static_cast<uint32_t>(dims_);
    const uint32_t metric = static_cast<uint32_t>(metric_);
    buf.append(reinterpret_cast<const char*>(&dims), 4);
    buf.append(reinterpret_cast<const char*>(&metric), 4);
    buf.append(reinterpret_cast<const char*>(&n), 8);
    buf.append(reinterpret_cast<const char*>(ids_.data()), n * 8);
    buf.append(reinterpret_cast<const char*>(data_.data()), data_.size() * 4);
    MRL_RETURN_IF_ERROR(WriteChecksumOf(path, buf));
    return WriteFileAtomic(path, buf);
  }

  Status LoadFrom(const std::string& bytes, const std::string& path) {
    auto bad = [&](const std::string& why) {
      return Status::Corruption("exact index '" + path + "': " + why);
    };
    if (bytes.size() < 24 || std::memcmp(bytes.data(), kExactMagic, 8) != 0) {
      return bad("bad header");
    }
    uint32_t dims, metric;
    uint64_t n;
    std::memcpy(&dims, bytes.data() + 8, 4);
    std::memcpy(&metric, bytes.data() + 12, 4);
    std::memcpy(&n, bytes.data() + 16, 8);
    if (static_cast<int32_t>(dims) != dims_) return bad("dims differ from the spec");
    if (metric != static_cast<uint32_t>(metric_)) return bad("metric differs");
    if (bytes.size() != 24 + n * 8 + n * dims * 4) return bad("size does not match the header");
    ids_.resize(n);
    data_.resize(n * dims);
    std::memcpy(ids_.data(), bytes.data() + 24, n * 8);
    std::memcpy(data_.data(), bytes.data() + 24 + n * 8, n * dims * 4);
    slot_.reserve(n);
    for (uint64_t i = 0; i < n; ++i) {
      if (!slot_.emplace(ids_[i], static_cast<uint32_t>(i)).second) return bad("duplicate id");
    }
    return Status::Ok();
  }

 private:
  const int32_t dims_;
  const IndexMetric metric_;
  mutable std::shared_mutex mu_;
  std::vector<uint64_t> ids_;                    // row -> id
  std::vector<float> data_;                      // rows, n x dims
  std::unordered_map<uint64_t, uint32_t> slot_;  // id -> row
};

// ---- HNSW (hnswlib) -------------------------------------------------------------------------

// hnswlib distance = -score, so smaller is closer for both metrics and the engine's kernels
// (with their runtime AVX2 dispatch) do the work instead of hnswlib's compile-time SIMD choice.
float NegDot(const void* a, const void* b, const void* param) {
  return -Dot(static_cast<const float*>(a), static_cast<const float*>(b),
              *static_cast<const size_t*>(param));
}
float L2Dist(const void* a, const void* b, const void* param) {
  return L2Sq(static_cast<const float*>(a), static_cast<const float*>(b),
              *static_cast<const size_t*>(param));
}

// int8 vectors (IndexSpec::int8): [scale f32][dims x int8], x ~= q * scale (EncodeInt8), at
// any alignment. Both sides of a distance are in this form (queries are quantized too).
float Int8Scale(const void* v) {
  float s;
  std::memcpy(&s, v, 4);
  return s;
}
const int8_t* Int8Values(const void* v) { return static_cast<const int8_t*>(v) + 4; }
float NegDotInt8(const void* a, const void* b, const void* param) {
  const size_t n = *static_cast<const size_t*>(param);
  const int8_t* x = Int8Values(a);
  const int8_t* y = Int8Values(b);
  int32_t s = 0;
  for (size_t i = 0; i < n; ++i) s += int32_t{x[i]} * int32_t{y[i]};
  return -Int8Scale(a) * Int8Scale(b) * static_cast<float>(s);
}
float L2DistInt8(const void* a, const void* b, const void* param) {
  const size_t n = *static_cast<const size_t*>(param);
  const int8_t* x = Int8Values(a);
  const int8_t* y = Int8Values(b);
  const float sa = Int8Scale(a), sb = Int8Scale(b);
  float s = 0;
  for (size_t i = 0; i < n; ++i) {
    const float d = sa * x[i] - sb * y[i];
    s += d * d;
  }
  return s;
}

class PrefixSpace final : public hnswlib::SpaceInterface<float> {
 public:
  PrefixSpace(size_t dims, IndexMetric metric, bool int8)
      : dims_(dims),
        bytes_(int8 ? 4 + dims : dims * sizeof(float)),
        fn_(int8 ? (metric == IndexMetric::kL2 ? L2DistInt8 : NegDotInt8)
                 : (metric == IndexMetric::kL2 ? L2Dist : NegDot)) {}
  size_t get_data_size() override { return bytes_; }
  hnswlib::DISTFUNC<float> get_dist_func() override { return fn_; }
  void* get_dist_func_param() override { return &dims_; }

 private:
  size_t dims_;
  size_t bytes_;
  hnswlib::DISTFUNC<float> fn_;
};

using Hnsw = hnswlib::HierarchicalNSW<float>;

class HnswIndex final : public LowDIndex {
 public:
  HnswIndex(const IndexSpec& spec, IndexMetric metric)
      : spec_(spec),
        metric_(metric),
        space_(static_cast<size_t>(spec.dims), metric, spec.int8),
        bytes_(space_.get_data_size()) {}

  ~HnswIndex() override {
    if (leak_) (void)hnsw_.release();  // a half-loaded hnswlib object cannot be destroyed safely
  }

  void Create(size_t capacity) {
    hnsw_ = std::make_unique<Hnsw>(&space_, std::max<size_t>(capacity, 1024),
                                   static_cast<size_t>(spec_.hnsw_m),
                                   static_cast<size_t>(spec_.ef_construction), /*seed=*/100);
  }

  Status Load(const std::string& path) {
    auto bad = [&](const std::string& why) {
      return Status::Corruption("hnsw index '" + path + "': " + why);
    };
    // hnswlib 0.6.2's loading constructor leaves counters uninitialised: start from a zeroed
    // object and call loadIndex ourselves.
    hnsw_.reset(new Hnsw(&space_));
    hnsw_->num_deleted_ = 0;
    hnsw_->cur_element_count = 0;
    hnsw_->data_level0_memory_ = nullptr;
    hnsw_->linkLists_ = nullptr;
    hnsw_->visited_list_pool_ = nullptr;
    hnsw_->metric_distance_computations = 0;
    hnsw_->metric_hops = 0;
    try {
      hnsw_->loadIndex(path, &space_, 0);
    } catch (const std::exception& e) {
      leak_ = true;
      return bad(e.what());
    }
    const size_t want_efc = std::max<size_t>(spec_.ef_construction, spec_.hnsw_m);
    if (hnsw_->data_size_ != bytes_ ||
        hnsw_->size_data_per_element_ !=
            hnsw_->size_links_level0_ + hnsw_->data_size_ + sizeof(hnswlib::labeltype)) {
      return bad("dims (or int8) differ from the spec");
    }
    if (hnsw_->M_ != static_cast<size_t>(spec_.hnsw_m) || hnsw_->ef_construction_ != want_efc) {
      return bad("M or ef_construction differ from the spec");
    }
    return Status::Ok();
  }

  int32_t dims() const override { return spec_.dims; }
  IndexKind kind() const override { return IndexKind::kHnsw; }

  void Upsert(uint64_t id, const float* v) override {
    std::unique_lock lock(mu_);
    auto it = hnsw_->label_lookup_.find(id);
    if (it == hnsw_->label_lookup_.end()) EnsureCapacity(1);
    hnsw_->addPoint(Stored(v, &scratch_), id);  // replaces (and undeletes) an existing label
  }

  void AddBulk(std::span<const uint64_t> ids, const float* floats, int threads) override {
    std::unique_lock lock(mu_);
    EnsureCapacity(ids.size());
    const size_t n = ids.size();
    const size_t dims = static_cast<size_t>(spec_.dims);
    // The stored form of every vector, rows of bytes_ (int8: quantized here once).
    std::vector<uint8_t> encoded;
    const uint8_t* rows = reinterpret_cast<const uint8_t*>(floats);
    if (spec_.int8) {
      encoded.resize(n * bytes_);
      for (size_t i = 0; i < n; ++i) EncodeInt8Row(floats + i * dims, &encoded[i * bytes_]);
      rows = encoded.data();
    }
    auto vectors = [&](size_t i) { return rows + i * bytes_; };
    const int t = std::max(1, std::min<int>(threads, static_cast<int>(n / 256) + 1));
    if (t == 1) {
      for (size_t i = 0; i < n; ++i) hnsw_->addPoint(vectors(i), ids[i]);
      return;
    }
    std::atomic<size_t> next{0};
    auto work = [&] {
      for (;;) {
        const size_t begin = next.fetch_add(64);
        if (begin >= n) break;
        const size_t end = std::min(n, begin + 64);
        for (size_t i = begin; i < end; ++i) hnsw_->addPoint(vectors(i), ids[i]);
      }
    };
    std::vector<std::thread> pool;
    for (int i = 1; i < t; ++i) pool.emplace_back(work);
    work();
    for (auto& th : pool) th.join();
  }

  bool Remove(uint64_t id) override {
    std::unique_lock lock(mu_);
    auto it = hnsw_->label_lookup_.find(id);
    if (it == hnsw_->label_lookup_.end() || hnsw_->isMarkedDeleted(it->second)) return false;
    hnsw_->markDeletedInternal(it->second);
    return true;
  }

  bool Contains(uint64_t id) const override {
    std::shared_lock lock(mu_);
    auto it = hnsw_->label_lookup_.find(id);
    return it != hnsw_->label_lookup_.end() && !hnsw_->isMarkedDeleted(it->second);
  }

  void Search(const float* float_query, int32_t k, int32_t ef, bool exact,
              std::vector<Candidate>* out) const override {
    std::shared_lock lock(mu_);
    out->clear();
    const Hnsw& h = *hnsw_;
    if (h.cur_element_count == 0 || k <= 0) return;
    if (exact) {
      TopK top;
      top.Reset(static_cast<size_t>(k), out);
      const size_t dims = static_cast<size_t>(spec_.dims);
      thread_local std::vector<float> decoded;
      decoded.resize(dims);
      for (hnswlib::tableint i = 0; i < h.cur_element_count; ++i) {
        if (h.num_deleted_ && h.isMarkedDeleted(i)) continue;
        const char* data = h.getDataByInternalId(i);
        const float* v = reinterpret_cast<const float*>(data);
        if (spec_.int8) {  // the float query against the dequantized vector
          DecodeInt8(Int8Values(data), dims, Int8Scale(data), decoded.data());
          v = decoded.data();
        }
        top.Push(h.getExternalLabel(i), Score(metric_, float_query, v, dims));
      }
      top.Finish();
      return;
    }
    thread_local std::vector<uint8_t> query_bytes;
    const void* query = Stored(float_query, &query_bytes);
    // hnswlib's searchKnn reads a shared ef_; this is the same search with a per-call ef.
    hnswlib::tableint cur = h.enterpoint_node_;
    float cur_dist = h.fstdistfunc_(query, h.getDataByInternalId(cur), h.dist_func_param_);
    for (int level = h.maxlevel_; level > 0; --level) {
      bool changed = true;
      while (changed) {
        changed = false;
        const unsigned int* data = h.get_linklist(cur, level);
        const int size = h.getListCount(const_cast<unsigned int*>(data));
        const hnswlib::tableint* cands = reinterpret_cast<const hnswlib::tableint*>(data + 1);
        for (int i = 0; i < size; ++i) {
          const float d =
              h.fstdistfunc_(query, h.getDataByInternalId(cands[i]), h.dist_func_param_);
          if (d < cur_dist) {
            cur_dist = d;
            cur = cands[i];
            changed = true;
          }
        }
      }
    }
    const size_t beam = std::max<size_t>(static_cast<size_t>(ef > 0 ? ef : spec_.ef_search),
                                         static_cast<size_t>(k));
    auto top = h.num_deleted_ ? h.searchBaseLayerST<true, false>(cur, query, beam)
                              : h.searchBaseLayerST<false, false>(cur, query, beam);
    while (top.size() > static_cast<size_t>(k)) top.pop();
    out->resize(top.size());
    for (size_t i = out->size(); i-- > 0;) {  // the queue pops the farthest first
      (*out)[i] = Candidate{h.getExternalLabel(top.top().second), -top.top().first};
      top.pop();
    }
    // Equal scores: keep the engine's tie order (smaller id first).
    std::sort(out->begin(), out->end(), BetterCandidate);
  }

  uint64_t size() const override {
    std::shared_lock lock(mu_);
    return hnsw_->cur_element_count - hnsw_->num_deleted_;
  }

 private:
  void EncodeInt8Row(const float* v, uint8_t* out) const {
    const float scale =
        EncodeInt8(v, static_cast<size_t>(spec_.dims), reinterpret_cast<int8_t*>(out + 4));
    std::memcpy(out, &scale, 4);
  }
  // What hnswlib stores for `v`: v itself, or its int8 form in *buf.
  const void* Stored(const float* v, std::vector<uint8_t>* buf) const {
    if (!spec_.int8) return v;
    buf->resize(bytes_);
    EncodeInt8Row(v, buf->data());
    return buf->data();
  }

 public:

  uint64_t memory_bytes() const override {
    std::shared_lock lock(mu_);
    const Hnsw& h = *hnsw_;
    uint64_t upper = 0;
    for (size_t i = 0; i < h.cur_element_count; ++i) {
      if (h.element_levels_[i] > 0) upper += h.size_links_per_element_ * h.element_levels_[i] + 1;
    }
    return h.max_elements_ *
               (h.size_data_per_element_ + sizeof(std::mutex) + sizeof(int) + sizeof(void*)) +
           upper + h.label_lookup_.size() * 32 + h.label_lookup_.bucket_count() * sizeof(void*);
  }

  Status Save(const std::string& path) const override {
    std::shared_lock lock(mu_);
    const Hnsw& h = *hnsw_;
    const std::string tmp = TempPathFor(path);
    uint64_t expected = 96 + h.cur_element_count * h.size_data_per_element_;
    for (size_t i = 0; i < h.cur_element_count; ++i) {
      expected +=
          4 + (h.element_levels_[i] > 0 ? h.size_links_per_element_ * h.element_levels_[i] : 0);
    }
    try {
      const_cast<Hnsw&>(h).saveIndex(tmp);
    } catch (const std::exception& e) {
      ::unlink(tmp.c_str());
      return Status::IoError("saving '" + tmp + "': " + e.what());
    }
    // saveIndex does not report write errors: a short file means the disk filled up.
    std::error_code ec;
    const uint64_t written = std::filesystem::file_size(tmp, ec);
    if (ec || written != expected) {
      ::unlink(tmp.c_str());
      return Status::IoError("short write of '" + tmp +
                             "' (disk full?): " + std::to_string(written) + " of " +
                             std::to_string(expected) + " bytes");
    }
    Status st = WriteChecksumOfFile(path, tmp);
    if (!st.ok()) {
      ::unlink(tmp.c_str());
      return st;
    }
    return CommitTempFile(tmp, path);
  }

 private:
  // REQUIRES: mu_ held exclusively.
  void EnsureCapacity(size_t extra) {
    const size_t need = hnsw_->cur_element_count + extra;
    if (need <= hnsw_->max_elements_) return;
    hnsw_->resizeIndex(std::max(need, hnsw_->max_elements_ * 2));
  }

  const IndexSpec spec_;
  std::vector<uint8_t> scratch_;  // Upsert's encoded vector; guarded by mu_ (exclusive)
  const IndexMetric metric_;
  PrefixSpace space_;  // must outlive hnsw_
  const size_t bytes_;  // one stored vector: dims floats, or the int8 form
  mutable std::shared_mutex mu_;
  std::unique_ptr<Hnsw> hnsw_;
  bool leak_ = false;
};

}  // namespace

std::unique_ptr<LowDIndex> MakeLowDIndex(const IndexSpec& spec, IndexMetric metric,
                                         size_t capacity) {
  if (spec.kind == IndexKind::kExact) {
    return std::make_unique<ExactIndex>(spec.dims, metric, capacity);
  }
  auto index = std::make_unique<HnswIndex>(spec, metric);
  index->Create(capacity);
  return index;
}

Result<std::unique_ptr<LowDIndex>> LoadLowDIndex(const std::string& path, const IndexSpec& spec,
                                                 IndexMetric metric) {
  MRL_RETURN_IF_ERROR(VerifyChecksum(path));
  if (spec.kind == IndexKind::kExact) {
    auto bytes = ReadFile(path);
    if (!bytes.ok()) return bytes.status();
    auto index = std::make_unique<ExactIndex>(spec.dims, metric, 0);
    MRL_RETURN_IF_ERROR(index->LoadFrom(*bytes, path));
    return std::unique_ptr<LowDIndex>(std::move(index));
  }
  auto index = std::make_unique<HnswIndex>(spec, metric);
  MRL_RETURN_IF_ERROR(index->Load(path));
  return std::unique_ptr<LowDIndex>(std::move(index));
}

}  // namespace mrl::shard
