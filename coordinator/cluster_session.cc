// ClusterState's session and leadership: the leased session key, the keep-alive, the campaign
// for the leader key (etcd's election pattern) and the refusals of changes on a non-leader.
#include <iostream>

#include "coordinator/cluster_keys.h"
#include "coordinator/cluster_state.h"

namespace mrl::coord {

using Clock = std::chrono::steady_clock;

void ClusterState::StartSession(const std::string& address) {
  {
    std::lock_guard<std::mutex> lock(session_mu_);
    address_ = address;
    if (session_started_ || !store_ || opt_.follow) return;
    session_started_ = true;
  }
  if (embedded_) {
    // One process owns the embedded store: a leader key or session left in the file is a
    // previous run's (its lease timers restarted at open); end them now instead of after the TTL.
    auto old = store_->GetPrefix("");
    if (old.ok()) {
      for (const auto& kv : old->kvs) {
        if ((kv.key == kLeaderKey || kv.key.rfind(kSessionsPrefix, 0) == 0) && kv.lease != 0)
          (void)store_->RevokeLease(kv.lease);
      }
    }
  }
  session_thread_ = std::thread([this] { SessionLoop(); });
  if (embedded_) AwaitLeadership(5000);
}

bool ClusterState::AwaitLeadership(int timeout_ms) {
  std::unique_lock<std::mutex> lock(session_mu_);
  return session_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                              [&] { return leader_ || stop_; }) &&
         leader_;
}

void ClusterState::SessionLoop() {
  const auto ttl = std::chrono::seconds(opt_.session_ttl_s);
  const auto keepalive_every = std::chrono::milliseconds(opt_.session_ttl_s * 1000 / 3);
  Clock::time_point last_sent{};
  for (;;) {
    int64_t lease = 0;
    bool leading = false, check_now = false;
    std::string address;
    {
      std::lock_guard<std::mutex> lock(session_mu_);
      if (stop_) return;
      lease = lease_;
      leading = leader_;
      address = address_;
      check_now = keepalive_now_;
      keepalive_now_ = false;
    }
    if (lease == 0) {
      auto granted = store_->GrantLease(opt_.session_ttl_s);
      if (granted.ok()) {
        auto put = store_->Put(kSessionsPrefix + opt_.id, SessionValue(opt_.id, address), *granted);
        if (put.ok()) {
          NoteStoreOk();
          std::lock_guard<std::mutex> lock(session_mu_);
          lease_ = lease = *granted;
          last_ack_ = last_sent = Clock::now();
          std::cerr << "mrl-coordinator: session " << opt_.id << " on " << store_->Describe()
                    << " (lease " << lease << ", TTL " << opt_.session_ttl_s << " s)" << std::endl;
        } else {
          NoteStoreError(put.status());
          (void)store_->RevokeLease(*granted);
        }
      } else {
        NoteStoreError(granted.status());
      }
    } else if (check_now || Clock::now() - last_sent >= keepalive_every) {
      last_sent = Clock::now();
      Status st = store_->KeepAlive(lease);
      std::lock_guard<std::mutex> lock(session_mu_);
      if (st.ok()) {
        last_ack_ = Clock::now();
      } else if (st.code() == Status::Code::kNotFound) {
        ++lease_losses_;
        std::cerr << "mrl-coordinator: session lease " << lease << " expired; starting a new one"
                  << std::endl;
        LoseLeadership("its session lease expired");
        lease_ = lease = 0;
      } else {
        NoteStoreError(st);
        if (leader_ && Clock::now() - last_ack_ > ttl) {
          LoseLeadership("no keep-alive was acknowledged for the session TTL");
        }
      }
    }
    if (lease != 0 && !leading && !opt_.follow && Campaign() && on_lead_) on_lead_();
    std::unique_lock<std::mutex> lock(session_mu_);
    // Woken early by a change of the leader key (the watch) or by the destructor.
    const std::string seen = current_.id;
    session_cv_.wait_for(lock, std::min<Clock::duration>(keepalive_every, std::chrono::seconds(1)),
                         [&] { return stop_ || keepalive_now_ || (!leader_ && current_.id != seen); });
  }
}

bool ClusterState::Campaign() {
  int64_t lease = 0;
  std::string address;
  {
    std::lock_guard<std::mutex> lock(session_mu_);
    lease = lease_;
    address = address_;
  }
  if (lease == 0) return false;
  auto r = store_->Txn({meta::Compare::Absent(kLeaderKey)},
                       {meta::Op::Put(kLeaderKey, SessionValue(opt_.id, address), lease)});
  if (!r.ok()) {
    std::lock_guard<std::mutex> lock(session_mu_);
    // etcd refuses a put under a lease it no longer has: the session is gone, check it now.
    if (r.status().message().find("lease not found") != std::string::npos) {
      keepalive_now_ = true;
    } else {
      NoteStoreError(r.status());
    }
    return false;
  }
  NoteStoreOk();
  int64_t won_at = r->succeeded ? r->revision : 0;
  meta::KeyValue seen;
  if (r->succeeded) {
    seen.key = kLeaderKey;
    seen.value = SessionValue(opt_.id, address);
    seen.create_revision = seen.mod_revision = r->revision;
    seen.version = 1;
    seen.lease = lease;
  } else {
    auto got = store_->Get(kLeaderKey);
    if (!got.ok() || got->kvs.empty()) return false;  // gone meanwhile: the next round tries
    seen = got->kvs[0];
    // Ours already (a retried campaign applied, or the key outlived a store outage).
    if (seen.lease == lease) won_at = seen.mod_revision;
  }
  const LeaderInfo holder = ParseLeader(seen);
  ObserveLeaderKey(seen);
  std::lock_guard<std::mutex> lock(session_mu_);
  current_ = holder;
  if (won_at == 0 || lease_ != lease) return false;
  leader_ = true;
  leader_revision_ = won_at;
  std::cerr << "mrl-coordinator: " << opt_.id << " leads the cluster (leader key revision "
            << won_at << ")" << std::endl;
  session_cv_.notify_all();
  return true;
}

void ClusterState::LoseLeadership(const std::string& why) {
  if (!leader_) return;
  leader_ = false;
  leader_revision_ = 0;
  std::cerr << "mrl-coordinator: " << opt_.id << " no longer leads: " << why << std::endl;
}

Status ClusterState::AdmitChange(const std::string& what) const {
  Status st = CheckLeader();
  if (!st.ok()) {
    std::cerr << "mrl-coordinator: refused " << what << ": " << st.message() << std::endl;
  }
  return st;
}

Status ClusterState::NotLeaderRefusal() const {
  {
    std::lock_guard<std::mutex> lock(status_mu_);
    if (!reachable_) {
      return Status::Unavailable("cluster changes are refused: the metadata store is unreachable (" +
                                 last_error_ +
                                 "); searches and writes go on with the last shard map");
    }
  }
  if (current_.id == opt_.id) {
    return Status::Unavailable("this coordinator's leadership has just ended and the store has "
                               "not named the next leader yet; retry the change");
  }
  if (current_.id.empty()) {
    return Status::Unavailable("no coordinator leads the cluster now (an election is under way "
                               "or the metadata store is unreachable); retry the change");
  }
  return Status::FailedPrecondition("not the leader: cluster changes go to the leader, '" +
                                    current_.id + "' at " +
                                    (current_.address.empty() ? "?" : current_.address));
}

Status ClusterState::CheckLeader() const {
  if (opt_.follow) return FollowerRefusal();
  if (!store_) return FollowerRefusal();
  std::lock_guard<std::mutex> lock(session_mu_);
  if (!session_started_) {
    return Status::Unavailable("this coordinator has not joined the cluster yet; retry");
  }
  // No refusal for a session that has not been renewed lately: if this coordinator was
  // deposed meanwhile, the change's transaction is fenced; if the store is away, it fails.
  if (!leader_) return NotLeaderRefusal();
  return Status::Ok();
}

}  // namespace mrl::coord
