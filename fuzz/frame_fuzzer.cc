// libFuzzer target for everything a peer's bytes reach before a handler: the streaming frame
// decoder (common/frame.h) and CheckFrame's header checks and FlatBuffers verification
// (common/protocol.h). Every body that passes is unpacked through the object API (touching every
// field), packed again, and must verify again.
//
// Seeds: MRL_FUZZ_WRITE_SEEDS=<dir> ./frame_fuzzer writes one valid frame per message type into
// <dir> and exits (ops/fuzz.sh does this before fuzzing).
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "common/frame.h"
#include "common/protocol.h"

namespace {

using namespace mrl::wire;

void RoundTrip(const Frame& f) {
  switch (static_cast<MessageType>(f.header.type)) {
#define MRL_FUZZ_CASE_(Table)                                          \
  case MessageType::Table: {                                           \
    Table##T obj;                                                      \
    RootAs<Table>(f.body)->UnPackTo(&obj);                             \
    auto again = PackBody(obj);                                        \
    FrameHeader h = f.header;                                          \
    h.body_length = static_cast<uint32_t>(again.size());               \
    std::string why;                                                   \
    if (CheckFrame(h, again, &why) != ErrorCode::Ok) __builtin_trap(); \
    break;                                                             \
  }
#define MRL_FUZZ_RPC_(Stem) MRL_FUZZ_CASE_(Stem##Request) MRL_FUZZ_CASE_(Stem##Response)
    MRL_WIRE_RPCS(MRL_FUZZ_RPC_)
    MRL_FUZZ_CASE_(Error)
#undef MRL_FUZZ_RPC_
#undef MRL_FUZZ_CASE_
    default:
      break;
  }
}

void WriteSeeds(const std::string& dir) {
  int n = 0;
  auto put = [&](const std::vector<uint8_t>& frame) {
    std::ofstream out(dir + "/seed_" + std::to_string(n++), std::ios::binary);
    out.write(reinterpret_cast<const char*>(frame.data()),
              static_cast<std::streamsize>(frame.size()));
  };
  UpsertRequestT up;
  up.collection = "c";
  up.dims = 4;
  up.ids = {1, 2};
  up.vectors = {1, 2, 3, 4, 5, 6, 7, 8};
  auto p = std::make_unique<PayloadT>();
  p->data = {1, 2, 3};
  up.payloads.push_back(std::move(p));
  up.payloads.push_back(std::make_unique<PayloadT>());
  put(PackFrame(up, 1, 100));
  ShortlistRequestT sl;
  sl.collection = "c";
  sl.dims = 2;
  sl.queries = {0.5f, 0.25f, 1, 2};
  sl.k = 10;
  put(PackFrame(sl, 2));
  RerankRequestT rr;
  rr.collection = "c";
  rr.dims = 2;
  rr.queries = {1, 2};
  auto ids = std::make_unique<IdListT>();
  ids->ids = {1, 2, 3};
  rr.id_lists.push_back(std::move(ids));
  put(PackFrame(rr, 3));
  SearchRequestT se;
  se.collection = "c";
  se.dims = 2;
  se.queries = {1, 2};
  se.stages = {SearchStage(2, 10), SearchStage(2, 5)};
  put(PackFrame(se, 4));
  CreateCollectionRequestT cc;
  cc.spec = std::make_unique<CollectionSpecT>();
  cc.spec->name = "c";
  cc.spec->dim = 8;
  cc.spec->nesting = {4, 8};
  cc.spec->indexes.push_back(std::make_unique<IndexSpecT>());
  put(PackFrame(cc, 5));
  GetResponseT gr;
  auto pt = std::make_unique<PointT>();
  pt->id = 9;
  pt->found = true;
  pt->vector = {1, 2};
  gr.points.push_back(std::move(pt));
  put(PackFrame(gr, 6));
  ShortlistResponseT sr;
  auto cl = std::make_unique<CandidateListT>();
  cl->candidates = {Candidate(1, 0.5f), Candidate(2, 0.25f)};
  sr.results.push_back(std::move(cl));
  put(PackFrame(sr, 7));
  StatsResponseT st;
  auto rs = std::make_unique<RequestStatsT>();
  rs->buckets_us = {1, 2, 3};
  st.requests.push_back(std::move(rs));
  put(PackFrame(st, 8));
  put(ErrorFrame(9, ErrorCode::BadFrame, "x"));
  AuthRequestT au;
  au.secret = "s";
  put(PackFrame(au, 10));
  // Two frames back to back, and an empty-bodied one.
  auto two = PackFrame(PingRequestT{}, 11);
  auto more = PackFrame(DeleteRequestT{}, 12);
  two.insert(two.end(), more.begin(), more.end());
  put(two);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("MRL_FUZZ_WRITE_SEEDS")) {
    WriteSeeds(dir);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A small limit so the too-large path is reachable; the first byte picks a split point so
  // frames also arrive in pieces.
  FrameDecoder whole(1 << 16), split(1 << 16);
  whole.Append(std::span<const uint8_t>(data, size));
  const size_t cut = size > 0 ? data[0] % (size + 1) : 0;
  split.Append(std::span<const uint8_t>(data, cut));
  split.Append(std::span<const uint8_t>(data + cut, size - cut));
  if (whole.pending_frames() != split.pending_frames() || whole.error() != split.error()) {
    __builtin_trap();  // decoding must not depend on how the bytes were chunked
  }
  while (auto f = whole.Next()) {
    std::string why;
    if (CheckFrame(f->header, f->body, &why) == ErrorCode::Ok) RoundTrip(*f);
  }
  return 0;
}
