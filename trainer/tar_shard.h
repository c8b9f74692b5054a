// WebDataset-style tar shards: a sample is the run of consecutive tar members that share a key
// (the member name up to its first '.'), e.g. 000042.png + 000042.cls. Reading streams member by
// member (libarchive), so a shard of any size never has to fit in RAM.
#pragma once

#include <archive.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace mrl {

// One sample as stored: undecoded payload bytes and its label.
struct RawSample {
  std::string key;        // "000042"
  std::string ext;        // payload extension: "png", "jpg", "jpeg" or "npy"
  std::string payload;    // encoded image / .npy bytes
  int64_t label = -1;     // from KEY.cls (decimal text)
  int64_t index = 0;      // position of the sample within its shard (0-based)
};

// Reads the samples of one shard in file order. Not thread-safe; one reader per thread.
class TarShardReader {
 public:
  // Opens `path` for streaming. Errors: NotFound / IoError naming the file.
  static Result<std::unique_ptr<TarShardReader>> Open(const std::string& path);
  ~TarShardReader();
  TarShardReader(const TarShardReader&) = delete;
  TarShardReader& operator=(const TarShardReader&) = delete;

  // Reads the next sample into *out. Returns false at the clean end of the shard.
  // Errors (Corruption, naming the shard and the sample key): truncated or corrupt tar, a sample
  // without KEY.cls, a sample without an image/npy payload, a non-numeric label.
  // With `with_payload` false the payload bytes are skipped, not read (counting, label scans).
  Result<bool> Next(RawSample* out, bool with_payload = true);

  const std::string& path() const { return path_; }

 private:
  explicit TarShardReader(std::string path) : path_(std::move(path)) {}
  Status ReadHeader();  // advances to the next member; sets have_member_/member_key_/ext_

  std::string path_;
  struct archive* ar_ = nullptr;
  bool have_member_ = false;  // a header was read and its data not consumed yet
  bool at_end_ = false;
  std::string member_key_, member_ext_;
  int64_t next_index_ = 0;
};

// Writes a shard to `path` atomically: members go to a temporary file that is fsync'ed and then
// renamed over `path`, so a reader never sees a partial shard.
class TarShardWriter {
 public:
  static Result<std::unique_ptr<TarShardWriter>> Create(const std::string& path);
  ~TarShardWriter();  // without Finish(): the temporary file is removed
  TarShardWriter(const TarShardWriter&) = delete;
  TarShardWriter& operator=(const TarShardWriter&) = delete;

  // Adds KEY.EXT (payload) and KEY.cls (label as decimal text).
  Status Add(const std::string& key, const std::string& ext, const std::string& payload,
             int64_t label);
  // Adds one member verbatim (for writing non-standard shards, e.g. in tests).
  Status AddMember(const std::string& name, const std::string& data);
  // Closes, fsyncs and renames into place.
  Status Finish();

 private:
  TarShardWriter(std::string path, std::string tmp) : path_(std::move(path)), tmp_(std::move(tmp)) {}

  std::string path_, tmp_;
  struct archive* ar_ = nullptr;
  bool finished_ = false;
};

// Counts the samples of a shard by reading its headers (payloads are skipped) and reports the
// largest label seen. Errors as for TarShardReader::Next.
struct ShardScan {
  int64_t samples = 0;
  int64_t max_label = -1;
};
Result<ShardScan> ScanShard(const std::string& path);

}  // namespace mrl
