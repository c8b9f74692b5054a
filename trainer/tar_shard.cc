#include "trainer/tar_shard.h"

#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "common/atomic_file.h"

namespace mrl {

namespace {

// "dir/000042.png" -> key "dir/000042", ext "png" (WebDataset: the first '.' of the base name).
void SplitName(const std::string& name, std::string* key, std::string* ext) {
  const size_t slash = name.rfind('/');
  const size_t base = slash == std::string::npos ? 0 : slash + 1;
  const size_t dot = name.find('.', base);
  if (dot == std::string::npos) {
    *key = name;
    ext->clear();
  } else {
    *key = name.substr(0, dot);
    *ext = name.substr(dot + 1);
  }
}

bool IsPayloadExt(const std::string& ext) {
  return ext == "png" || ext == "jpg" || ext == "jpeg" || ext == "npy";
}

std::string ArchiveError(struct archive* ar) {
  const char* e = archive_error_string(ar);
  return e ? e : "unknown libarchive error";
}

}  // namespace

Result<std::unique_ptr<TarShardReader>> TarShardReader::Open(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return Status::NotFound("shard '" + path + "' does not exist or is not a file");
  }
  std::unique_ptr<TarShardReader> r(new TarShardReader(path));
  r->ar_ = archive_read_new();
  archive_read_support_format_tar(r->ar_);
  if (archive_read_open_filename(r->ar_, path.c_str(), 1 << 16) != ARCHIVE_OK) {
    return Status::IoError("cannot open shard '" + path + "': " + ArchiveError(r->ar_));
  }
  return r;
}

TarShardReader::~TarShardReader() {
  if (ar_) archive_read_free(ar_);
}

Status TarShardReader::ReadHeader() {
  struct archive_entry* e = nullptr;
  for (;;) {
    const int rc = archive_read_next_header(ar_, &e);
    if (rc == ARCHIVE_EOF) {
      at_end_ = true;
      have_member_ = false;
      return Status::Ok();
    }
    if (rc < ARCHIVE_WARN) {
      return Status::Corruption("shard '" + path_ + "': corrupt or truncated tar after sample '" +
                                member_key_ + "': " + ArchiveError(ar_));
    }
    if (archive_entry_filetype(e) != AE_IFREG) continue;  // directories etc.
    SplitName(archive_entry_pathname(e), &member_key_, &member_ext_);
    have_member_ = true;
    return Status::Ok();
  }
}

Result<bool> TarShardReader::Next(RawSample* out, bool with_payload) {
  if (!have_member_ && !at_end_) MRL_RETURN_IF_ERROR(ReadHeader());
  if (at_end_) return false;
  out->key = member_key_;
  out->ext.clear();
  out->payload.clear();
  out->label = -1;
  out->index = next_index_;
  bool have_label = false;
  while (have_member_ && member_key_ == out->key) {
    const std::string ext = member_ext_;
    const bool want = ext == "cls" || (with_payload && IsPayloadExt(ext));
    std::string data;
    if (want) {
      char buf[1 << 16];
      for (;;) {
        const la_ssize_t n = archive_read_data(ar_, buf, sizeof(buf));
        if (n < 0) {
          return Status::Corruption("shard '" + path_ + "': corrupt or truncated tar in sample '" +
                                    out->key + "': " + ArchiveError(ar_));
        }
        if (n == 0) break;
        data.append(buf, static_cast<size_t>(n));
      }
    } else if (archive_read_data_skip(ar_) < ARCHIVE_WARN) {
      return Status::Corruption("shard '" + path_ + "': corrupt or truncated tar in sample '" +
                                out->key + "': " + ArchiveError(ar_));
    }
    if (ext == "cls") {
      while (!data.empty() && std::isspace(static_cast<unsigned char>(data.back()))) data.pop_back();
      int64_t v = -1;
      auto [p, ec] = std::from_chars(data.data(), data.data() + data.size(), v);
      if (ec != std::errc() || p != data.data() + data.size() || v < 0) {
        return Status::Corruption("shard '" + path_ + "': sample '" + out->key +
                                  "' has a bad label '" + data + "' in " + out->key + ".cls");
      }
      out->label = v;
      have_label = true;
    } else if (IsPayloadExt(ext)) {
      out->ext = ext;
      out->payload = std::move(data);
    }
    have_member_ = false;
    MRL_RETURN_IF_ERROR(ReadHeader());
  }
  if (!have_label) {
    return Status::Corruption("shard '" + path_ + "': sample '" + out->key +
                              "' has no label (" + out->key + ".cls missing)");
  }
  if (out->ext.empty() && with_payload) {
    return Status::Corruption("shard '" + path_ + "': sample '" + out->key +
                              "' has no .png/.jpg/.npy payload");
  }
  ++next_index_;
  return true;
}

Result<std::unique_ptr<TarShardWriter>> TarShardWriter::Create(const std::string& path) {
  const std::string tmp = TempPathFor(path);
  std::unique_ptr<TarShardWriter> w(new TarShardWriter(path, tmp));
  w->ar_ = archive_write_new();
  archive_write_set_format_ustar(w->ar_);
  if (archive_write_open_filename(w->ar_, tmp.c_str()) != ARCHIVE_OK) {
    return Status::IoError("cannot create '" + tmp + "': " + ArchiveError(w->ar_));
  }
  return w;
}

TarShardWriter::~TarShardWriter() {
  if (ar_) archive_write_free(ar_);
  if (!finished_) ::unlink(tmp_.c_str());
}

Status TarShardWriter::AddMember(const std::string& name, const std::string& data) {
  struct archive_entry* e = archive_entry_new();
  archive_entry_set_pathname(e, name.c_str());
  archive_entry_set_size(e, static_cast<la_int64_t>(data.size()));
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_perm(e, 0644);
  archive_entry_set_mtime(e, 0, 0);  // reproducible shards
  int rc = archive_write_header(ar_, e);
  archive_entry_free(e);
  if (rc != ARCHIVE_OK) return Status::IoError("'" + tmp_ + "': " + ArchiveError(ar_));
  if (!data.empty() &&
      archive_write_data(ar_, data.data(), data.size()) != static_cast<la_ssize_t>(data.size())) {
    return Status::IoError("write failed on '" + tmp_ + "' (disk full?): " + ArchiveError(ar_));
  }
  return Status::Ok();
}

Status TarShardWriter::Add(const std::string& key, const std::string& ext,
                           const std::string& payload, int64_t label) {
  MRL_RETURN_IF_ERROR(AddMember(key + "." + ext, payload));
  return AddMember(key + ".cls", std::to_string(label));
}

Status TarShardWriter::Finish() {
  if (archive_write_close(ar_) != ARCHIVE_OK) {
    return Status::IoError("cannot close '" + tmp_ + "': " + ArchiveError(ar_));
  }
  archive_write_free(ar_);
  ar_ = nullptr;
  MRL_RETURN_IF_ERROR(CommitTempFile(tmp_, path_));
  finished_ = true;
  return Status::Ok();
}

Result<ShardScan> ScanShard(const std::string& path) {
  auto r = TarShardReader::Open(path);
  if (!r.ok()) return r.status();
  ShardScan scan;
  RawSample s;
  for (;;) {
    auto more = r.value()->Next(&s, /*with_payload=*/false);
    if (!more.ok()) return more.status();
    if (!more.value()) break;
    ++scan.samples;
    scan.max_label = std::max(scan.max_label, s.label);
  }
  return scan;
}

}  // namespace mrl
