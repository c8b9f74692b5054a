// mrl-shard as a process, at the protocol's edges: malformed frames, the shared secret, bad
// requests, pipelining and stats, deadlines, SIGTERM drain, floods, the connection limit,
// reconnects, the config file.
#include "tests/shard_server_fixture.h"

namespace mrl {
namespace {

using namespace shard_server_testing;  // NOLINT: the shared helpers

class RawConn {
 public:
  explicit RawConn(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    timeval tv{10, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~RawConn() { close(fd_); }
  void Send(const std::vector<uint8_t>& b) {
    ASSERT_EQ(send(fd_, b.data(), b.size(), MSG_NOSIGNAL), ssize_t(b.size()));
  }
  void ShutdownWrite() { shutdown(fd_, SHUT_WR); }
  // The next frame, or nullopt on EOF/error.
  std::optional<wire::Frame> Read() {
    while (true) {
      if (auto f = dec_.Next()) return f;
      uint8_t buf[4096];
      const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) return std::nullopt;
      dec_.Append(std::span<const uint8_t>(buf, n));
    }
  }
  // The next frame must be an Error with `code` for request `id`, its message containing `says`.
  void ExpectError(wire::ErrorCode code, uint64_t id, const std::string& says = "") {
    auto f = Read();
    ASSERT_TRUE(f) << "connection closed instead of an error";
    std::string why;
    ASSERT_EQ(wire::CheckFrame(f->header, f->body, &why), wire::ErrorCode::Ok) << why;
    ASSERT_EQ(f->header.type, uint16_t(wire::MessageType::Error));
    EXPECT_EQ(f->header.request_id, id);
    EXPECT_EQ(wire::RootAs<wire::Error>(f->body)->code(), code)
        << wire::EnumNameErrorCode(wire::RootAs<wire::Error>(f->body)->code()) << ": "
        << wire::RootAs<wire::Error>(f->body)->message()->str();
    const auto* message = wire::RootAs<wire::Error>(f->body)->message();
    EXPECT_NE((message ? message->str() : "").find(says), std::string::npos)
        << "message lacks '" << says << "'";
  }
  void ExpectClosed() { EXPECT_FALSE(Read()) << "connection should be closed"; }
  void ExpectPong(uint64_t id) {
    auto f = Read();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->header.type, uint16_t(wire::MessageType::PingResponse));
    EXPECT_EQ(f->header.request_id, id);
  }

 private:
  int fd_ = -1;
  wire::FrameDecoder dec_;
};

TEST_F(ShardServerTest, MalformedFramesGetTypedErrorsWhileOtherClientsAreServed) {
  StartShard({"--max-frame-bytes", "1048576"});
  auto client = shard_->Client();
  Load(*client, "c", Data(), 2000);
  const auto qs = RandomVectors(2, kDim, 8);
  auto reference = client->Call(ShortlistOf("c", qs, 2, 10, true));
  ASSERT_TRUE(reference.ok());
  // A well-behaved client keeps querying during the abuse and must always get the same answer.
  std::atomic<bool> stop{false};
  std::atomic<int> good{0}, bad{0};
  std::thread steady([&] {
    while (!stop) {
      auto r = client->Call(ShortlistOf("c", qs, 2, 10, true));
      if (r.ok() && Ids(*r->results[0]) == Ids(*reference->results[0])) {
        ++good;
      } else {
        ++bad;
      }
    }
  });
  // Wait for the steady client's first answer (on a loaded machine its thread may start late),
  // then count the answers it gets from the start of the abuse on.
  auto wait_for_good = [&](int more_than) {
    const auto until = std::chrono::steady_clock::now() + 30s;
    while (good.load() <= more_than && bad.load() == 0 &&
           std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(1ms);
    }
  };
  wait_for_good(0);
  const int good_before = good.load();

  {  // Random bytes: BadFrame, then closed.
    RawConn c(shard_->port());
    std::mt19937 rng(9);
    std::vector<uint8_t> junk(1000);
    for (auto& b : junk) b = static_cast<uint8_t>(rng());
    junk[0] = 'X';
    c.Send(junk);
    c.ExpectError(wire::ErrorCode::BadFrame, 0, "bad magic");
    c.ExpectClosed();
  }
  {  // A length above --max-frame-bytes: FrameTooLarge for that request id, then closed.
    RawConn c(shard_->port());
    wire::FrameHeader h;
    h.type = uint16_t(wire::MessageType::UpsertRequest);
    h.request_id = 31;
    h.body_length = 2u << 20;
    std::vector<uint8_t> hb(wire::kHeaderSize);
    wire::EncodeHeader(h, hb.data());
    c.Send(hb);
    c.ExpectError(wire::ErrorCode::FrameTooLarge, 31, "exceeds the limit of 1048576");
    c.ExpectClosed();
  }
  {  // Wrong version, unknown type, garbage body, a response sent as a request: a typed error
     // each, and the same connection keeps working.
    RawConn c(shard_->port());
    auto ping = wire::PackFrame(wire::PingRequestT{}, 1);
    auto v2 = ping;
    v2[4] = 2;  // version
    c.Send(v2);
    c.ExpectError(wire::ErrorCode::UnsupportedVersion, 1, "protocol version 2 not supported");
    wire::FrameHeader h;
    h.type = 999;
    h.request_id = 2;
    c.Send(wire::EncodeFrame(h, std::vector<uint8_t>(16, 1)));
    c.ExpectError(wire::ErrorCode::UnknownMessageType, 2, "message type 999");
    h.type = uint16_t(wire::MessageType::ShortlistRequest);
    h.request_id = 3;
    c.Send(wire::EncodeFrame(h, std::vector<uint8_t>(64, 0xEE)));
    c.ExpectError(wire::ErrorCode::BadFrame, 3);
    h.type = uint16_t(wire::MessageType::PingResponse);
    h.request_id = 4;
    c.Send(wire::EncodeFrame(h, wire::PackBody(wire::PingResponseT{})));
    c.ExpectError(wire::ErrorCode::UnknownMessageType, 4, "is not a request");
    auto body = wire::PackBody(ShortlistOf("c", qs, 1, 10, true));
    body.resize(body.size() / 2);  // truncated body with a consistent length
    h.type = uint16_t(wire::MessageType::ShortlistRequest);
    h.request_id = 5;
    c.Send(wire::EncodeFrame(h, body));
    c.ExpectError(wire::ErrorCode::BadFrame, 5);
    c.Send(wire::PackFrame(wire::PingRequestT{}, 6));
    c.ExpectPong(6);
  }
  {  // A frame cut short by the peer closing: no answer possible, nothing breaks.
    RawConn c(shard_->port());
    auto f = wire::PackFrame(ShortlistOf("c", qs, 1, 10, true), 7);
    c.Send(std::vector<uint8_t>(f.begin(), f.end() - 10));
    c.ShutdownWrite();
    c.ExpectClosed();
  }
  {  // Many random frames with valid headers and random bodies on one connection.
    RawConn c(shard_->port());
    std::mt19937 rng(10);
    for (uint64_t id = 100; id < 150; ++id) {
      wire::FrameHeader h;
      h.type = uint16_t(1 + rng() % 28);
      h.request_id = id;
      std::vector<uint8_t> body(rng() % 200);
      for (auto& b : body) b = static_cast<uint8_t>(rng());
      c.Send(wire::EncodeFrame(h, body));
      auto r = c.Read();
      ASSERT_TRUE(r) << "connection dropped on frame " << id;
      EXPECT_EQ(r->header.request_id, id);
    }
    c.Send(wire::PackFrame(wire::PingRequestT{}, 200));
    c.ExpectPong(200);
  }
  wait_for_good(good_before);
  stop = true;
  steady.join();
  EXPECT_GT(good_before, 0);
  EXPECT_GT(good.load(), good_before);
  EXPECT_EQ(bad.load(), 0);
  auto after = client->Call(ShortlistOf("c", qs, 2, 10, true));
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(Ids(*after->results[1]), Ids(*reference->results[1]));
}

TEST_F(ShardServerTest, SharedSecretIsRequiredWhenConfigured) {
  const std::string secret_file = dir_ + "/secret";
  std::ofstream(secret_file) << "s3cret\n";
  StartShard({"--auth-secret-file", secret_file});
  {
    auto c = shard_->Client();
    auto r = c->Call(wire::PingRequestT{});
    EXPECT_EQ(r.status().code(), Status::Code::kUnauthenticated) << r.status().ToString();
  }
  {
    auto c = shard_->Client("wrong");
    auto r = c->Call(wire::PingRequestT{});
    EXPECT_EQ(r.status().code(), Status::Code::kUnauthenticated) << r.status().ToString();
  }
  {
    auto c = shard_->Client("s3cret");
    auto r = c->Call(wire::PingRequestT{});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE(c->Call(CollectionRequest("c")).ok());
  }
  {  // Raw: a request before AuthRequest gets Unauthenticated and the connection is closed.
    RawConn c(shard_->port());
    c.Send(wire::PackFrame(wire::StatsRequestT{}, 5));
    c.ExpectError(wire::ErrorCode::Unauthenticated, 5);
    c.ExpectClosed();
  }
}

TEST_F(ShardServerTest, BadRequestsGetTypedErrorsAndWriteNothing) {
  StartShard({"--max-k", "500", "--max-batch", "100", "--max-queries", "8"});
  auto client = shard_->Client();
  Load(*client, "c", Data(), 100);
  // Each bad request gets the exact code, and a message that says what was wrong.
  auto expect = [](const auto& r, Status::Code code, const std::string& says, const char* what) {
    ASSERT_FALSE(r.ok()) << what << ": accepted";
    EXPECT_EQ(r.status().code(), code) << what << ": " << r.status().ToString();
    EXPECT_NE(r.status().message().find(says), std::string::npos)
        << what << ": message lacks '" << says << "': " << r.status().ToString();
  };
  std::vector<uint64_t> ids = {5000, 5001, 5002};
  std::vector<float> vecs(3 * kDim, 0.5f);
  {  // NaN and Inf reject the whole batch.
    for (float bad : {std::nanf(""), INFINITY}) {
      auto v = vecs;
      v[2 * kDim + 7] = bad;
      expect(client->Call(UpsertOf("c", ids, v.data())), Status::Code::kInvalidArgument,
             "point 5002: vector contains NaN or Inf", "nan");
    }
  }
  {  // Wrong dimension (consistent with itself, not with the collection).
    wire::UpsertRequestT up;
    up.collection = "c";
    up.dims = 128;
    up.ids = ids;
    up.vectors.assign(3 * 128, 0.5f);
    expect(client->Call(up), Status::Code::kInvalidArgument,
           "vector has 128 floats, collection 'c' has dim 256", "wrong dim");
    up.dims = kDim;  // and vectors that do not match ids * dims
    expect(client->Call(up), Status::Code::kInvalidArgument, "vectors must hold len(ids) * dims",
           "short vectors");
  }
  wire::GetRequestT get;
  get.collection = "c";
  get.ids = ids;
  auto got = client->Call(get);
  ASSERT_TRUE(got.ok());
  for (const auto& p : got->points) EXPECT_FALSE(p->found) << "partial write of " << p->id;
  {  // Batch beyond --max-batch.
    std::vector<uint64_t> many(101);
    std::iota(many.begin(), many.end(), 6000);
    std::vector<float> mv(101 * kDim, 0.25f);
    expect(client->Call(UpsertOf("c", many, mv.data())), Status::Code::kOutOfRange,
           "upsert batch of 101 points exceeds max_batch 100", "batch over the limit");
    get.ids = {6000, 6100};
    auto none = client->Call(get);
    ASSERT_TRUE(none.ok());
    for (const auto& p : none->points) EXPECT_FALSE(p->found) << "partial write of " << p->id;
  }
  const auto qs = RandomVectors(9, kDim, 11);
  expect(client->Call(UpsertOf("nope", ids, vecs.data())), Status::Code::kNotFound,
         "unknown collection 'nope'", "unknown");
  expect(client->Call(ShortlistOf("nope", qs, 1, 10, true)), Status::Code::kNotFound,
         "unknown collection 'nope'", "unknown collection");
  expect(client->Call(ShortlistOf("c", qs, 1, 501, true)), Status::Code::kOutOfRange,
         "k = 501 exceeds max_k 500", "k over max-k");
  expect(client->Call(ShortlistOf("c", qs, 1, 0, true)), Status::Code::kInvalidArgument,
         "k = 0 must be >= 1", "k = 0");
  expect(client->Call(ShortlistOf("c", qs, 9, 10, true)), Status::Code::kOutOfRange,
         "at most 8 queries per request (got 9)", "queries over max-queries");
  {
    auto sl = ShortlistOf("c", qs, 1, 10, true);
    sl.dims = 33;  // not a nesting dim
    sl.queries.push_back(0);
    expect(client->Call(sl), Status::Code::kInvalidArgument, "33 dims, which is not a nesting dim",
           "dims not in nesting");
    sl.queries.push_back(0);  // not a multiple of dims
    expect(client->Call(sl), Status::Code::kInvalidArgument, "queries must hold n * dims floats",
           "ragged queries");
    auto nan = ShortlistOf("c", qs, 1, 10, true);
    nan.queries[3] = std::nanf("");
    expect(client->Call(nan), Status::Code::kInvalidArgument, "query contains NaN or Inf",
           "NaN query");
  }
  // The server still answers.
  auto stats = client->Call(wire::StatsRequestT{});
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(PointCount(*stats, "c"), 100u);
}

TEST_F(ShardServerTest, ManyPipelinedRequestsOnOneConnectionAndStats) {
  StartShard();
  auto client = shard_->Client();
  Load(*client, "c", Data(), 3000);
  const auto qs = RandomVectors(1, kDim, 12);
  const auto want = Ids(*client->Call(ShortlistOf("c", qs, 1, 10, true))->results[0]);
  std::vector<std::future<Result<wire::ShortlistResponseT>>> calls;
  std::vector<std::future<Result<wire::GetResponseT>>> gets;
  const std::string collection = "c";
  for (int i = 0; i < 300; ++i) {
    calls.push_back(client->CallFuture(ShortlistOf("c", qs, 1, 10, true)));
    wire::GetRequestT g;
    g.collection = collection;
    g.ids = {uint64_t(i)};
    gets.push_back(client->CallFuture(g));
  }
  for (auto& c : calls) {
    auto r = c.get();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(Ids(*r->results[0]), want);
  }
  for (int i = 0; i < 300; ++i) {
    auto r = gets[i].get();
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->points[0]->id, uint64_t(i));
    EXPECT_TRUE(r->points[0]->found);
  }
  auto stats = client->Call(wire::StatsRequestT{});
  ASSERT_TRUE(stats.ok());
  uint64_t shortlists = 0, bucket_total = 0;
  for (const auto& r : stats->requests) {
    if (r->type == wire::MessageType::ShortlistRequest) {
      shortlists = r->count;
      for (uint64_t b : r->buckets_us) bucket_total += b;
    }
  }
  EXPECT_EQ(shortlists, 301u);
  EXPECT_EQ(bucket_total, 301u);
  EXPECT_EQ(PointCount(*stats, "c"), 3000u);
  EXPECT_GT(stats->disk_bytes, 0u);
  EXPECT_GE(stats->connections_open, 1u);
}

TEST_F(ShardServerTest, DeadlineExceededIsReportedAndTheClientRecovers) {
  StartShard();
  auto client = shard_->Client();
  Load(*client, "c", Data(), kPoints);
  const auto qs = RandomVectors(64, kDim, 13);
  // Queue heavy exact searches, then one with a 1 ms deadline behind them.
  std::vector<std::future<Result<wire::ShortlistResponseT>>> heavy;
  for (int i = 0; i < 8; ++i)
    heavy.push_back(client->CallFuture(ShortlistOf("c", qs, 64, 100, true)));
  auto late = client->Call(ShortlistOf("c", qs, 1, 10, true), 1);
  EXPECT_EQ(late.status().code(), Status::Code::kDeadlineExceeded) << late.status().ToString();
  for (auto& h : heavy) EXPECT_TRUE(h.get().ok());
  EXPECT_TRUE(client->Call(wire::PingRequestT{}).ok());
}

TEST_F(ShardServerTest, SigtermFinishesTheRequestsInFlight) {
  StartShard();
  auto client = shard_->Client();
  Load(*client, "c", Data(), kPoints);
  const auto qs = RandomVectors(64, kDim, 14);
  // Exact scans of 64 queries over 10000 points each, pipelined on one connection: the shard's
  // 2 worker threads take them a pair at a time, so the later ones are still running or queued
  // while the first answers come back.
  constexpr size_t kHeavy = 8;
  std::vector<std::future<Result<wire::ShortlistResponseT>>> heavy;
  for (size_t i = 0; i < kHeavy; ++i) {
    heavy.push_back(client->CallFuture(ShortlistOf("c", qs, 64, 100, true)));
  }
  auto answered = [&] {
    size_t n = 0;
    for (auto& h : heavy) n += h.wait_for(0s) == std::future_status::ready;
    return n;
  };
  // A first answer: the shard has received the requests (all written before it) and is working.
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (answered() == 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_GT(answered(), 0u) << "no answer within 60 s";
  shard_->SendTerm();
  const auto term_at = std::chrono::steady_clock::now();
  // Not answered now, so not answered when SIGTERM was sent: these were in flight.
  const size_t in_flight = kHeavy - answered();
  // A request sent after SIGTERM: answered, or refused cleanly; never left without an answer.
  auto late = client->CallFuture(ShortlistOf("c", qs, 1, 10, true), 30000);
  EXPECT_EQ(shard_->WaitExit(), 0) << shard_->Log();
  const double drain_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - term_at).count();
  std::cout << in_flight << " of " << kHeavy << " requests unanswered at SIGTERM; the shard exited "
            << drain_ms << " ms later\n";
  ASSERT_GE(in_flight, 1u) << "all answered before SIGTERM: the drain was not exercised";
  for (size_t i = 0; i < kHeavy; ++i) {
    auto r = heavy[i].get();
    ASSERT_TRUE(r.ok()) << "request " << i << ": " << r.status().ToString();
    EXPECT_EQ(r->results.size(), 64u);
    for (const auto& l : r->results) EXPECT_EQ(l->candidates.size(), 100u);
  }
  auto l = late.get();
  EXPECT_TRUE(l.ok() || l.status().code() == Status::Code::kUnavailable) << l.status().ToString();
  EXPECT_NE(shard_->Log().find("draining"), std::string::npos) << shard_->Log();
}

TEST_F(ShardServerTest, AFloodFromAPeerThatDoesNotReadIsThrottledNotDropped) {
  StartShard({"--max-in-flight-per-connection", "4"});
  RawConn c(shard_->port());
  std::vector<uint8_t> flood;
  for (uint64_t id = 1; id <= 2000; ++id) {
    auto f = wire::PackFrame(wire::PingRequestT{}, id);
    flood.insert(flood.end(), f.begin(), f.end());
  }
  c.Send(flood);  // 64 KB: fits the socket buffers while the server stops reading
  for (uint64_t id = 1; id <= 2000; ++id) {
    auto f = c.Read();
    ASSERT_TRUE(f) << "answer " << id << " missing";
    EXPECT_EQ(f->header.type, uint16_t(wire::MessageType::PingResponse));
  }
}

TEST_F(ShardServerTest, ConnectionsBeyondTheLimitAreRefusedWithOverloaded) {
  StartShard({"--max-connections", "1"});
  auto client = shard_->Client();
  ASSERT_TRUE(client->Call(wire::PingRequestT{}).ok());
  {
    RawConn extra(shard_->port());
    extra.ExpectError(wire::ErrorCode::Overloaded, 0);
    extra.ExpectClosed();
  }
  EXPECT_TRUE(client->Call(wire::PingRequestT{}).ok());
}

TEST_F(ShardServerTest, ClientReconnectsAfterTheServerRestarts) {
  StartShard();
  auto client = shard_->Client();
  ASSERT_TRUE(client->Call(wire::PingRequestT{}).ok());
  const uint16_t port = shard_->port();
  ASSERT_EQ(shard_->Terminate(), 0);
  EXPECT_EQ(client->Call(wire::PingRequestT{}).status().code(), Status::Code::kUnavailable);
  shard_->Start(port);  // same port, so the same client can find it again
  EXPECT_TRUE(client->Call(wire::PingRequestT{}).ok());
}

TEST(ShardConfigTest, FileOverridesDefaultsAndRejectsUnknownKeys) {
  const std::string dir = test_util::TempDir("shard_config");
  std::ofstream(dir + "/a.json") << R"({"port": 9, "sync_writes": false, "host": "0.0.0.0"})";
  shard::ShardConfig cfg;
  ASSERT_TRUE(shard::LoadConfigFile(dir + "/a.json", &cfg).ok());
  EXPECT_EQ(cfg.port, 9);
  EXPECT_FALSE(cfg.sync_writes);
  EXPECT_EQ(cfg.host, "0.0.0.0");
  EXPECT_EQ(cfg.max_k, 10000);
  std::ofstream(dir + "/b.json") << R"({"prot": 9})";
  EXPECT_EQ(shard::LoadConfigFile(dir + "/b.json", &cfg).code(), Status::Code::kInvalidArgument);
  std::ofstream(dir + "/c.json") << R"({"port": "x"})";
  EXPECT_EQ(shard::LoadConfigFile(dir + "/c.json", &cfg).code(), Status::Code::kInvalidArgument);
  EXPECT_NE(shard::ConfigToJson(cfg).find("\"max_frame_bytes\""), std::string::npos);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace mrl
