// Base64 (RFC 4648, with padding): etcd's JSON gateway carries keys and values as base64 bytes,
// and the embedded store's file keeps arbitrary bytes in JSON strings the same way.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace mrl::meta {

std::string Base64Encode(std::string_view bytes);
// InvalidArgument on a character outside the alphabet or a bad length.
Result<std::string> Base64Decode(std::string_view text);

}  // namespace mrl::meta
