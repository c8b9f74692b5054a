// The web console (issue 15) against a real cluster: 2 mrl-shard processes and mrl-coordinator
// holding real Fashion-MNIST images (Debian's dataset-fashion-mnist) as PNG payloads. The
// console's files and the figures it reads are checked over HTTP here; then Debian's chromium,
// driven headless by tests/console/console_check.mjs (puppeteer-core), opens every page,
// asserts on what it shows (shard and vector counts, a bucket move in progress, calibrated
// budgets, k images at every nesting dim), checks that a wrong token is refused, and saves
// screenshots under the build folder (console_screenshots/). Once over HTTP, once over TLS.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <random>

#include "common/png.h"
#include "meta/base64.h"
#include "tests/coordinator_e2e_fixture.h"
#include "trainer/idx.h"

namespace mrl::e2e {
namespace {

constexpr int kImages = 3000;
constexpr int kEmbDim = 64;  // nesting 8, 16, 32, 64

// The first kImages training images of Fashion-MNIST, embedded by a fixed random projection of
// the centred pixels whose coordinate i is scaled by 1/(1 + i/8): Matryoshka-like (the leading
// dims carry most of the similarity), and neighbours look alike, so the pictures are telling.
struct ImageData {
  std::vector<float> vectors;     // [kImages, kEmbDim]
  std::vector<std::string> pngs;  // base64
  std::vector<int64_t> labels;
};

ImageData LoadImages() {
  ImageData d;
  auto f = LoadFashionMnist("/usr/share/datasets/fashion-mnist");
  EXPECT_TRUE(f.ok()) << f.status().ToString();
  if (!f.ok()) return d;
  const int px = 28 * 28;
  std::vector<double> mean(px, 0);
  for (int i = 0; i < kImages; ++i)
    for (int p = 0; p < px; ++p)
      mean[p] += f->train.pixels[static_cast<size_t>(i) * px + p] / 255.0 / kImages;
  std::mt19937_64 rng(7);
  std::normal_distribution<double> g;
  std::vector<double> proj(static_cast<size_t>(kEmbDim) * px);
  for (auto& x : proj) x = g(rng);
  for (int i = 0; i < kImages; ++i) {
    const uint8_t* img = &f->train.pixels[static_cast<size_t>(i) * px];
    for (int j = 0; j < kEmbDim; ++j) {
      double s = 0;
      for (int p = 0; p < px; ++p)
        s += proj[static_cast<size_t>(j) * px + p] * (img[p] / 255.0 - mean[p]);
      d.vectors.push_back(static_cast<float>(s / (1.0 + j / 8.0)));
    }
    auto png = EncodePng8(std::span<const uint8_t>(img, px), 28, 28, 1);
    EXPECT_TRUE(png.ok());
    d.pngs.push_back(meta::Base64Encode(png.ok() ? *png : std::string()));
    d.labels.push_back(f->train.labels[static_cast<size_t>(i)]);
  }
  return d;
}

struct Endpoint {
  std::string url;         // http(s)://127.0.0.1:port
  std::string curl_flags;  // e.g. --cacert
};

// Creates "fmnist" (64 dims, 16 buckets, a 16-d HNSW index), loads the images and calibrates.
void Load(const Endpoint& e, const ImageData& d) {
  HttpResult r = Curl("PUT", e.url + "/v1/collections/fmnist",
                      json{{"dim", kEmbDim},
                           {"storage", "fp32"},
                           {"num_buckets", 16},
                           {"indexes", {{{"dims", 16}, {"kind", "hnsw"}}}}}
                          .dump(),
                      Cluster::kAdmin, e.curl_flags);
  ASSERT_EQ(r.status, 200) << r.body;
  for (int start = 0; start < kImages; start += 500) {
    json pts = json::array();
    for (int i = start; i < std::min(kImages, start + 500); ++i) {
      pts.push_back({{"id", i},
                     {"vector", std::vector<float>(d.vectors.begin() + i * kEmbDim,
                                                   d.vectors.begin() + (i + 1) * kEmbDim)},
                     {"payload",
                      {{"label", d.labels[static_cast<size_t>(i)]},
                       {"image_png", d.pngs[static_cast<size_t>(i)]}}}});
    }
    r = Curl("PUT", e.url + "/v1/collections/fmnist/points",
             json{{"points", pts}, {"deadline_ms", 30000}}.dump(), Cluster::kAdmin, e.curl_flags);
    ASSERT_EQ(r.status, 200) << r.body;
  }
  r = Curl("POST", e.url + "/v1/collections/fmnist/calibrate",
           json{{"sample", 50}, {"k", 10}}.dump(), Cluster::kAdmin, e.curl_flags);
  ASSERT_EQ(r.status, 200) << r.body;
}

// What the pages read, checked without a browser: the files, their headers, the per-shard
// figures in /metrics and the budgets' measured recall and latency.
void CheckServedFigures(const Endpoint& e) {
  HttpResult index = Curl("GET", e.url + "/ui/", "", "", e.curl_flags + " -i");
  EXPECT_EQ(index.status, 200);
  EXPECT_NE(index.body.find("Content-Type: text/html"), std::string::npos) << index.body;
  EXPECT_NE(index.body.find("Content-Security-Policy: default-src 'self'"), std::string::npos);
  EXPECT_NE(index.body.find("<script src=\"/ui/app.js\">"), std::string::npos);
  HttpResult js = Curl("GET", e.url + "/ui/app.js", "", "", e.curl_flags + " -i");
  EXPECT_EQ(js.status, 200);
  EXPECT_NE(js.body.find("Content-Type: text/javascript"), std::string::npos);
  // Only the listed files: no path reaches the filesystem; only GET.
  EXPECT_EQ(
      Curl("GET", e.url + "/ui/../../etc/passwd", "", "", e.curl_flags + " --path-as-is").status,
      404);
  EXPECT_EQ(Curl("GET", e.url + "/ui/nope.js", "", "", e.curl_flags).status, 404);
  EXPECT_EQ(Curl("POST", e.url + "/ui/app.js", "{}", Cluster::kAdmin, e.curl_flags).status, 405);
  // The API behind it still wants the token.
  EXPECT_EQ(Curl("GET", e.url + "/v1/cluster", "", "wrong", e.curl_flags).status, 401);

  HttpResult m = Curl("GET", e.url + "/metrics", "", "", e.curl_flags);
  ASSERT_EQ(m.status, 200);
  uint64_t points = 0;
  for (const char* s : {"s0", "s1"}) {
    const std::string key =
        std::string("mrl_shard_points{shard=\"") + s + "\",collection=\"fmnist\"} ";
    const size_t at = m.body.find(key);
    ASSERT_NE(at, std::string::npos) << m.body;
    points += std::stoull(m.body.substr(at + key.size()));
    EXPECT_NE(
        m.body.find(std::string("mrl_shard_memory_bytes{shard=\"") + s + "\",kind=\"indexes\"} "),
        std::string::npos);
    EXPECT_NE(m.body.find(std::string("mrl_shard_requests_total{shard=\"") + s + "\"} "),
              std::string::npos);
    EXPECT_NE(m.body.find(std::string("mrl_shard_disk_bytes{shard=\"") + s + "\"} "),
              std::string::npos);
  }
  EXPECT_EQ(points, static_cast<uint64_t>(kImages));

  HttpResult spec = Curl("GET", e.url + "/v1/collections/fmnist", "", Cluster::kRead, e.curl_flags);
  ASSERT_EQ(spec.status, 200) << spec.body;
  const json budgets = spec.Json()["budgets"];
  for (const char* b : {"fast", "balanced", "exact"}) {
    ASSERT_TRUE(budgets.contains(b)) << spec.body;
    EXPECT_GT(budgets[b]["recall"].get<double>(), 0.0) << spec.body;
    EXPECT_GT(budgets[b]["latency_us"].get<double>(), 0.0) << spec.body;
  }
  EXPECT_DOUBLE_EQ(budgets["exact"]["recall"].get<double>(), 1.0) << spec.body;
}

// Runs the browser check; its output is printed (the figures it saw) and it must exit 0.
void RunBrowser(const Endpoint& e, const std::string& shots, const std::string& env) {
  const std::string script = std::string(MRL_SOURCE_DIR) + "/tests/console/console_check.mjs";
  ASSERT_TRUE(std::filesystem::exists(std::string(MRL_SOURCE_DIR) +
                                      "/tests/console/node_modules/puppeteer-core"))
      << "puppeteer-core is not installed: run ops/setup.sh --tests (npm ci in tests/console)";
  ASSERT_TRUE(std::filesystem::exists("/usr/bin/chromium"))
      << "chromium is not installed: run ops/setup.sh --tests";
  const std::string cmd =
      env + " node " + script + " --url " + e.url + " --token " + Cluster::kAdmin +
      " --collection fmnist --shards 2 --vectors " + std::to_string(kImages) +
      " --id 5 --k 8 --nesting 8,16,32,64 --move-bucket 0 --move-target 1 --shots " + shots +
      (e.url.starts_with("https") ? " --insecure" : "") + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  size_t got;
  while ((got = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, got);
  const int rc = pclose(p);
  std::printf("%s", out.c_str());
  EXPECT_EQ(rc, 0) << cmd << "\n" << out;
  for (const char* f : {"cluster.png", "cluster_move.png", "collection.png", "search.png"}) {
    EXPECT_GT(
        std::filesystem::exists(shots + "/" + f) ? std::filesystem::file_size(shots + "/" + f) : 0u,
        10000u)
        << shots << "/" << f;
  }
}

// The copy throttle (2 KB/s, 20 points a page) keeps the move the browser starts in COPY for
// ~2 minutes: long enough to be seen in progress.
const std::vector<std::string> kSlowMoves = {"--move-max-bytes-per-s", "2000", "--move-copy-batch",
                                             "20"};

TEST(Console, PagesShowTheClusterAMoveBudgetsAndImagesAtEveryDim) {
  const ImageData d = LoadImages();
  ASSERT_EQ(d.labels.size(), static_cast<size_t>(kImages));
  Cluster c("console", 2, 1, {}, kSlowMoves);
  ASSERT_FALSE(HasFatalFailure());
  const Endpoint e{"http://" + c.coord().host() + ":" + std::to_string(c.coord().port()), ""};
  Load(e, d);
  CheckServedFigures(e);
  RunBrowser(e, std::string(MRL_BINARY_DIR) + "/console_screenshots/http", "");
}

TEST(Console, WorksWithTheApisTlsOn) {
  const ImageData d = LoadImages();
  const std::string dir = test_util::TempDir("console_cert");
  const std::string cert = dir + "/cert.pem", key = dir + "/key.pem";
  const std::string gen =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 "
      "-addext subjectAltName=IP:127.0.0.1 -keyout " +
      key + " -out " + cert + " 2>/dev/null";
  ASSERT_EQ(std::system(gen.c_str()), 0) << gen;
  std::vector<std::string> args = kSlowMoves;
  args.insert(args.end(), {"--tls-cert-file", cert, "--tls-key-file", key});
  Cluster c("console_tls", 2, 1, {}, args);
  ASSERT_FALSE(HasFatalFailure());
  const Endpoint e{"https://127.0.0.1:" + std::to_string(c.coord().port()), "--cacert " + cert};
  Load(e, d);
  CheckServedFigures(e);
  // node's fetch (the script starts the move) trusts the test's certificate; chromium accepts it.
  RunBrowser(e, std::string(MRL_BINARY_DIR) + "/console_screenshots/https",
             "NODE_EXTRA_CA_CERTS=" + cert);
}

}  // namespace
}  // namespace mrl::e2e
