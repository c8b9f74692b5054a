// The versions of the libraries under the rpc layer (Boost, FlatBuffers), from their headers,
// for the --version and build-info of every binary that speaks the protocol.
#pragma once

#include <boost/version.hpp>
#include <flatbuffers/base.h>

#include <vector>

#include "common/build_info.h"

namespace mrl::rpc {

inline std::vector<LibraryVersion> LibraryVersions() {
  return {{"Boost", DottedVersion(BOOST_VERSION / 100000, BOOST_VERSION / 100 % 1000,
                                  BOOST_VERSION % 100)},
          {"FlatBuffers", DottedVersion(FLATBUFFERS_VERSION_MAJOR, FLATBUFFERS_VERSION_MINOR,
                                        FLATBUFFERS_VERSION_REVISION)}};
}

}  // namespace mrl::rpc
