// A multi-host network on one machine for tests (issue 16): each "host" is a Linux network
// namespace with its own address on a private /24, plugged by a veth pair into a bridge that lives
// in a "switch" namespace of its own; the test process (the root namespace) is one more host on
// that bridge, so it reaches every daemon at its address. Nothing else of the machine's network
// changes: the root namespace only gains the lab's veth (and its /24 route), removed with it.
//
// A link cut (Cut) takes the host's port on the switch down: its packets vanish with no reset, as
// with a pulled cable or a dead switch port; Restore brings it back.
//
// Needs root and iproute2 (`ip netns`); Unavailable() says why not, for a test's skip message.
// The destructor deletes everything the lab created, after a failed assertion too.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace mrl::test_util {

class NetnsLab {
 public:
  // "" when a lab can be built here; else why not.
  static std::string Unavailable() {
    if (geteuid() != 0) return "network namespaces need root";
    if (IpBinary().empty()) return "no iproute2 `ip` binary";
    const std::string probe = "mrlprobe" + std::to_string(getpid());
    if (Run(IpBinary() + " netns add " + probe) != 0) return "`ip netns add` is refused here";
    Run(IpBinary() + " netns del " + probe);
    return "";
  }

  // hosts: namespaces h1..hN with addresses 10.231.S.1..N (S from this process id).
  // Throws std::runtime_error naming the command that failed (after removing what it made).
  explicit NetnsLab(int hosts) : tag_("m" + std::to_string(getpid() % 1000000)) {
    subnet_ = "10.231." + std::to_string(getpid() % 250) + ".";
    try {
      Build(hosts);
    } catch (...) {
      Teardown();
      throw;
    }
  }
  ~NetnsLab() { Teardown(); }
  NetnsLab(const NetnsLab&) = delete;
  NetnsLab& operator=(const NetnsLab&) = delete;

  std::string ns(int host) const { return tag_ + "-h" + std::to_string(host); }
  std::string address(int host) const { return subnet_ + std::to_string(host); }
  // argv that runs `argv` inside `host`'s namespace.
  std::vector<std::string> Inside(int host, std::vector<std::string> argv) const {
    argv.insert(argv.begin(), {IpBinary(), "netns", "exec", ns(host)});
    return argv;
  }
  // The host's link goes down at the switch (silently: no reset) / comes back.
  void Cut(int host) { Must(IpBinary() + " -n " + Switch() + " link set " + tag_ + "p" + std::to_string(host) + " down"); }
  void Restore(int host) { Must(IpBinary() + " -n " + Switch() + " link set " + tag_ + "p" + std::to_string(host) + " up"); }

  static std::string IpBinary() {
    for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
      if (std::filesystem::exists(p)) return p;
    }
    return "";
  }

 private:
  void Build(int hosts) {
    const std::string ip = IpBinary();
    switch_made_ = true;
    Must(ip + " netns add " + Switch());
    Must(ip + " -n " + Switch() + " link add br0 type bridge");
    Must(ip + " -n " + Switch() + " link set br0 up");
    for (int h = 1; h <= hosts; ++h) {
      Must(ip + " netns add " + ns(h));
      namespaces_.push_back(ns(h));
      const std::string in_host = tag_ + "h" + std::to_string(h), on_switch = tag_ + "p" + std::to_string(h);
      Must(ip + " link add " + in_host + " netns " + ns(h) + " type veth peer name " + on_switch +
           " netns " + Switch());
      Must(ip + " -n " + Switch() + " link set " + on_switch + " master br0 up");
      Must(ip + " -n " + ns(h) + " addr add " + address(h) + "/24 dev " + in_host);
      Must(ip + " -n " + ns(h) + " link set " + in_host + " up");
      Must(ip + " -n " + ns(h) + " link set lo up");
    }
    // The test process's own port on the switch.
    Must(ip + " link add " + tag_ + "c0 type veth peer name " + tag_ + "c1 netns " + Switch());
    root_link_ = true;
    Must(ip + " -n " + Switch() + " link set " + tag_ + "c1 master br0 up");
    Must(ip + " addr add " + subnet_ + "254/24 dev " + tag_ + "c0");
    Must(ip + " link set " + tag_ + "c0 up");
  }
  void Teardown() {
    const std::string ip = IpBinary();
    if (root_link_) Run(ip + " link del " + tag_ + "c0");
    for (const std::string& n : namespaces_) Run(ip + " netns del " + n);
    if (switch_made_) Run(ip + " netns del " + Switch());
    root_link_ = switch_made_ = false;
    namespaces_.clear();
  }
  std::string Switch() const { return tag_ + "-sw"; }
  static int Run(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }
  static void Must(const std::string& cmd) {
    if (Run(cmd) != 0) throw std::runtime_error("netns lab: `" + cmd + "` failed");
  }

  std::string tag_, subnet_;
  std::vector<std::string> namespaces_;
  bool root_link_ = false, switch_made_ = false;
};

}  // namespace mrl::test_util
