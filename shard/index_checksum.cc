#include "shard/index_checksum.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/atomic_file.h"

namespace mrl::shard {

namespace {

// An index file's checksum sidecar, "<file>.sum": "crc32 <hex> size <bytes>\n", written before
// the file itself is published, so a published file always has the sum of its own bytes.
struct FileSum {
  uint32_t crc = 0;
  uint64_t size = 0;
};

void Extend(FileSum* sum, const char* data, size_t n) {
  sum->crc = static_cast<uint32_t>(
      crc32(sum->crc, reinterpret_cast<const Bytef*>(data), static_cast<uInt>(n)));
  sum->size += n;
}

FileSum SumOf(std::string_view bytes) {
  FileSum sum;
  constexpr size_t kStep = 1u << 30;  // zlib takes uInt lengths
  for (size_t at = 0; at < bytes.size(); at += kStep) {
    Extend(&sum, bytes.data() + at, std::min(kStep, bytes.size() - at));
  }
  return sum;
}

// Streams the file in 1 MiB reads (an index may be larger than the RAM to spare).
Result<FileSum> SumOfFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IoError("open '" + path + "': " + std::strerror(errno));
  FileSum sum;
  std::string buf(1u << 20, '\0');
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      return Status::IoError("read '" + path + "': " + std::strerror(e));
    }
    if (n == 0) break;
    Extend(&sum, buf.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  return sum;
}

Status WriteSum(const std::string& index_path, const FileSum& sum) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "crc32 %08x size %llu\n", sum.crc,
                static_cast<unsigned long long>(sum.size));
  return WriteFileAtomic(IndexChecksumPath(index_path), buf);
}

}  // namespace

Status VerifyChecksum(const std::string& path) {
  auto line = ReadFile(IndexChecksumPath(path));
  if (!line.ok()) {
    return Status::Corruption("index '" + path + "': no checksum file (" + IndexChecksumPath(path) +
                              ")");
  }
  unsigned crc = 0;
  unsigned long long size = 0;
  if (std::sscanf(line->c_str(), "crc32 %x size %llu", &crc, &size) != 2) {
    return Status::Corruption("index '" + path + "': unreadable checksum file");
  }
  auto got = SumOfFile(path);
  if (!got.ok()) return got.status();
  if (got->size != size) {
    return Status::Corruption("index '" + path + "': truncated: " + std::to_string(got->size) +
                              " bytes, the checkpoint wrote " + std::to_string(size));
  }
  if (got->crc != crc) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), "checksum mismatch: crc32 %08x, the checkpoint wrote %08x",
                  got->crc, crc);
    return Status::Corruption("index '" + path + "': " + buf);
  }
  return Status::Ok();
}

std::string IndexChecksumPath(const std::string& index_path) { return index_path + ".sum"; }

Status WriteChecksumOf(const std::string& index_path, std::string_view bytes) {
  return WriteSum(index_path, SumOf(bytes));
}

Status WriteChecksumOfFile(const std::string& index_path, const std::string& file) {
  auto sum = SumOfFile(file);
  if (!sum.ok()) return sum.status();
  return WriteSum(index_path, sum.value());
}

}  // namespace mrl::shard
