// etcd with TLS and authentication: the URL's parameters, then the shared secure cluster (TLS with
// client certificates, auth on, 2-s tokens): a wrong password, no credentials, a server
// certificate from another CA or for another host, no client certificate, a token that expires.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <thread>
#include <vector>

#include "common/atomic_file.h"
#include "meta/etcd_store.h"
#include "meta/store.h"
#include "ops/local_etcd.h"
#include "tests/meta_store_fixture.h"
#include "tests/test_util.h"

namespace mrl::meta {
namespace {

using store_test::Clock;
using store_test::Events;
using store_test::kTokenTtlS;
using store_test::SharedSecureEtcd;

TEST(MetaStoreUrl, TlsAndAuthParametersAndTheirMistakes) {
  auto o = ParseEtcdUrl(
      "etcd://10.0.0.1:2379,10.0.0.2:2379/prod/mrl?ca=/etc/etcd/ca.pem&cert=/etc/mrl/c.pem"
      "&key=/etc/mrl/c.key&user=mrl&password_file=/etc/mrl/etcd%20pw");
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->endpoints.size(), 2u);
  EXPECT_EQ(o->prefix, "/prod/mrl/");
  EXPECT_TRUE(o->tls);
  EXPECT_EQ(o->ca_file, "/etc/etcd/ca.pem");
  EXPECT_EQ(o->cert_file, "/etc/mrl/c.pem");
  EXPECT_EQ(o->key_file, "/etc/mrl/c.key");
  EXPECT_EQ(o->user, "mrl");
  EXPECT_EQ(o->password_file, "/etc/mrl/etcd pw");  // %-decoded
  // A path in the query is not the prefix; ca= alone turns TLS on; tls=1 with the system's CAs.
  auto ca_only = ParseEtcdUrl("etcd://h:1?ca=/x/ca.pem");
  ASSERT_TRUE(ca_only.ok());
  EXPECT_EQ(ca_only->prefix, "/mrl/");
  EXPECT_TRUE(ca_only->tls);
  auto tls = ParseEtcdUrl("etcd://h:1/p?tls=1");
  ASSERT_TRUE(tls.ok());
  EXPECT_TRUE(tls->tls);
  EXPECT_TRUE(tls->ca_file.empty());
  EXPECT_FALSE(ParseEtcdUrl("etcd://h:1/p")->tls);
  // Unknown parameters are named; a password in the URL is refused without being echoed.
  auto unknown = ParseEtcdUrl("etcd://h:1/p?ca=/x&bogus=1&cacert=2");
  EXPECT_EQ(unknown.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("unknown parameters 'bogus', 'cacert'"),
            std::string::npos)
      << unknown.status().message();
  auto password = ParseEtcdUrl("etcd://h:1/p?user=root&password=hunter2");
  EXPECT_EQ(password.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(password.status().message().find("password_file"), std::string::npos);
  EXPECT_EQ(password.status().message().find("hunter2"), std::string::npos)
      << password.status().message();
  EXPECT_FALSE(ParseEtcdUrl("etcd://h:1/p?cert=/c.pem").ok());          // no key
  EXPECT_FALSE(ParseEtcdUrl("etcd://h:1/p?user=root").ok());            // no password_file
  EXPECT_FALSE(ParseEtcdUrl("etcd://h:1/p?tls=0&ca=/x/ca.pem").ok());   // contradiction
  EXPECT_FALSE(ParseEtcdUrl("etcd://h:1/p?ca=/x&ca=/y").ok());          // twice
  EXPECT_FALSE(ParseEtcdUrl("etcd://h:1/p?ca=%zz").ok());               // bad escape
  EXPECT_FALSE(OpenStore("etcd://h:1/p?ca=/nonexistent/ca.pem").ok());  // loaded at open
  auto no_pw = OpenStore("etcd://h:1/p?user=root&password_file=/nonexistent/pw");
  EXPECT_EQ(no_pw.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(no_pw.status().message().find("/nonexistent/pw"), std::string::npos);
  // Describe() says TLS on or off and the user, never the password.
  const std::string dir = test_util::TempDir("meta_url");
  ASSERT_TRUE(WriteFileAtomic(dir + "/pw", "s3cret-pw\n").ok());
  auto secure = OpenStore("etcd://127.0.0.1:1/p?tls=1&user=root&password_file=" + dir + "/pw");
  ASSERT_TRUE(secure.ok()) << secure.status().ToString();
  const std::string d = secure.value()->Describe();
  EXPECT_NE(d.find("tls on"), std::string::npos) << d;
  EXPECT_NE(d.find("user root"), std::string::npos) << d;
  EXPECT_EQ(d.find("s3cret"), std::string::npos) << d;
  EXPECT_NE(OpenStore("etcd://127.0.0.1:1/p").value()->Describe().find("tls off"),
            std::string::npos);
}

// ---- etcd with TLS and authentication (the shared secure cluster) ------------------------

// The shared secure cluster's URL for `prefix`, as options, with `edit` applied.
std::unique_ptr<EtcdStore> SecureStore(const std::string& prefix,
                                       const std::function<void(EtcdOptions&)>& edit) {
  ops::LocalEtcd* etcd = SharedSecureEtcd();
  if (etcd == nullptr) return nullptr;
  auto o = ParseEtcdUrl(etcd->Url(prefix));
  EXPECT_TRUE(o.ok()) << o.status().ToString();
  if (!o.ok()) return nullptr;
  edit(o.value());
  auto s = EtcdStore::Open(o.value());
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(s).value() : nullptr;
}

// A wrong password: Unauthenticated at once, one exchange, no retry loop; a watch ends with it.
TEST(EtcdAuth, AWrongPasswordIsAClearErrorAndNotRetried) {
  const std::string dir = test_util::TempDir("etcd_wrong_pw");
  ASSERT_TRUE(WriteFileAtomic(dir + "/pw", "not-the-password\n").ok());
  auto store = SecureStore("auth", [&](EtcdOptions& o) { o.password_file = dir + "/pw"; });
  ASSERT_NE(store, nullptr);
  const auto t0 = Clock::now();
  auto r = store->Get("k");
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kUnauthenticated) << r.status().ToString();
  EXPECT_NE(r.status().message().find("etcd authentication failed for user 'root'"),
            std::string::npos)
      << r.status().message();
  EXPECT_EQ(r.status().message().find("not-the-password"), std::string::npos);
  EXPECT_EQ(store->exchanges(), 1u);  // not retried on other endpoints
  EXPECT_EQ(store->authentications(), 0u);
  EXPECT_LT(s, 1.0);
  std::printf("[meta etcd_tls_auth] wrong password, after %.3f s: %s\n", s,
              r.status().ToString().c_str());
  Events ev;
  auto watch = store->WatchPrefix("w/", 0, ev.Callback());
  ASSERT_TRUE(watch.ok());
  ASSERT_TRUE(ev.WaitForError(5));
  std::lock_guard<std::mutex> lock(ev.mu);
  EXPECT_EQ(ev.error.code(), Status::Code::kUnauthenticated) << ev.error.ToString();
}

// No user against an etcd with auth on: a clear error naming what to configure, not a retry loop.
TEST(EtcdAuth, WithoutCredentialsAnAuthEnabledEtcdSaysWhatIsMissing) {
  auto store = SecureStore("auth", [](EtcdOptions& o) {
    o.user.clear();
    o.password_file.clear();
  });
  ASSERT_NE(store, nullptr);
  auto r = store->Put("k", "v");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kUnauthenticated) << r.status().ToString();
  EXPECT_NE(r.status().message().find("requires authentication"), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("password_file="), std::string::npos);
  EXPECT_EQ(store->exchanges(), 1u);
  std::printf("[meta etcd_tls_auth] no credentials: %s\n", r.status().ToString().c_str());
  Events ev;
  auto watch = store->WatchPrefix("w/", 0, ev.Callback());
  ASSERT_TRUE(watch.ok());
  ASSERT_TRUE(ev.WaitForError(5));
  std::lock_guard<std::mutex> lock(ev.mu);
  EXPECT_EQ(ev.error.code(), Status::Code::kUnauthenticated) << ev.error.ToString();
}

// The server's certificate is checked: a CA that did not sign it, or a host it does not name
// ("localhost" for a certificate of 127.0.0.1), is a TLS error; and etcd wants our certificate.
TEST(EtcdTls, AServerCertificateNotSignedByTheCaOrNotNamingTheHostIsRefused) {
  auto other = ops::WriteTestCertificates(test_util::TempDir("etcd_other_ca"));
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  auto wrong_ca = SecureStore("tls", [&](EtcdOptions& o) {
    o.ca_file = other->ca;
    o.retry_ms = 500;
  });
  ASSERT_NE(wrong_ca, nullptr);
  auto r = wrong_ca->Get("k");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kUnavailable);
  EXPECT_NE(r.status().message().find("TLS handshake failed: certificate verify failed"),
            std::string::npos)
      << r.status().message();
  std::printf("[meta etcd_tls_auth] another CA: %s\n", r.status().ToString().c_str());

  auto wrong_host = SecureStore("tls", [&](EtcdOptions& o) {
    o.endpoints = {"localhost" + o.endpoints[0].substr(o.endpoints[0].rfind(':'))};
    o.retry_ms = 500;
  });
  ASSERT_NE(wrong_host, nullptr);
  auto h = wrong_host->Get("k");
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.status().message().find("certificate verify failed"), std::string::npos)
      << h.status().message();
  EXPECT_NE(h.status().message().find("mismatch"), std::string::npos) << h.status().message();
  std::printf("[meta etcd_tls_auth] another host name: %s\n", h.status().ToString().c_str());

  auto no_client_cert = SecureStore("tls", [&](EtcdOptions& o) {
    o.cert_file.clear();
    o.key_file.clear();
    o.retry_ms = 500;
  });
  ASSERT_NE(no_client_cert, nullptr);
  auto c = no_client_cert->Get("k");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Status::Code::kUnavailable);
  EXPECT_NE(c.status().message().find("etcd refused our client certificate"), std::string::npos)
      << c.status().message();
  std::printf("[meta etcd_tls_auth] no client certificate: %s\n", c.status().ToString().c_str());

  // The same files that work: the store reads (the checks above failed for their reason).
  auto right = SecureStore("tls", [](EtcdOptions&) {});
  ASSERT_NE(right, nullptr);
  EXPECT_TRUE(right->Get("k").ok());
  // Each member's status over TLS, with the store's token: all answer, one leads.
  int healthy = 0, leaders = 0;
  for (const EtcdMember& m : right->Members()) {
    healthy += m.healthy ? 1 : 0;
    leaders += m.leader ? 1 : 0;
    EXPECT_TRUE(m.error.empty()) << m.endpoint << ": " << m.error;
  }
  EXPECT_EQ(healthy, 3);
  EXPECT_EQ(leaders, 1);
}

// A simple token unused for longer than --auth-token-ttl expires on etcd's side: the next calls
// (4 at once: they share one renewal) get a new one and succeed, a watch opened before keeps
// delivering, and a watch opened with the stale token renews it too.
TEST(EtcdAuth, AnExpiredTokenIsRenewedTransparently) {
  auto store = SecureStore("expiry", [](EtcdOptions&) {});
  ASSERT_NE(store, nullptr);
  auto first = store->Put("t/a", "1");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(store->authentications(), 1u);
  Events before;
  auto w1 = store->WatchPrefix("t/", first.value(), before.Callback());
  ASSERT_TRUE(w1.ok());
  const auto idle = std::chrono::milliseconds(kTokenTtlS * 1000 + 1500);  // etcd checks every 1 s
  std::this_thread::sleep_for(idle);
  const uint64_t calls = store->exchanges();
  constexpr int kWriters = 4;
  std::vector<Status> results(kWriters);
  std::vector<std::thread> writers;
  for (int i = 0; i < kWriters; ++i) {
    writers.emplace_back([&, i] {
      results[static_cast<size_t>(i)] = store->Put("t/b" + std::to_string(i), "2").status();
    });
  }
  for (auto& t : writers) t.join();
  for (const Status& st : results) EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(store->authentications(), 2u);          // expired, renewed once for all four
  EXPECT_EQ(store->exchanges(), calls + kWriters);  // one exchange per call: no failover
  ASSERT_TRUE(before.WaitFor(kWriters));
  // Expired again; a new watch starts with the stale token and must renew it itself.
  std::this_thread::sleep_for(idle);
  Events after;
  auto w2 = store->WatchPrefix("t/", first.value() - 1, after.Callback());
  ASSERT_TRUE(w2.ok());
  ASSERT_TRUE(after.WaitFor(1 + kWriters));
  EXPECT_EQ(store->authentications(), 3u);
  ASSERT_TRUE(store->Put("t/c", "3").ok());
  ASSERT_TRUE(before.WaitFor(kWriters + 1));
  ASSERT_TRUE(after.WaitFor(kWriters + 2));
  for (Events* ev : {&before, &after}) {
    std::lock_guard<std::mutex> lock(ev->mu);
    EXPECT_TRUE(ev->error.ok()) << ev->error.ToString();
    EXPECT_EQ(ev->got.back().kv.key, "t/c");
  }
  std::printf("[meta etcd_tls_auth] tokens obtained: %llu (1 + a renewal after each %d s idle)\n",
              static_cast<unsigned long long>(store->authentications()), kTokenTtlS);
}

}  // namespace
}  // namespace mrl::meta
