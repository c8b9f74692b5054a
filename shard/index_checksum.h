// An index file's checksum sidecar, "<file>.sum": "crc32 <hex> size <bytes>\n" (zlib's CRC-32),
// written before the index file itself is published, so a published file always has the sum
// of its own bytes. A load checks the file against it first (missing sidecar, truncated,
// checksum mismatch: each named in the Corruption it returns).
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace mrl::shard {

std::string IndexChecksumPath(const std::string& index_path);

// The sidecar of `bytes` / of the file `file`, for the index to be published at index_path.
Status WriteChecksumOf(const std::string& index_path, std::string_view bytes);
Status WriteChecksumOfFile(const std::string& index_path, const std::string& file);

// Ok, or Corruption naming the check that failed: no checksum file, unreadable checksum file,
// truncated (size), checksum mismatch. IoError when the index file cannot be read.
Status VerifyChecksum(const std::string& index_path);

}  // namespace mrl::shard
