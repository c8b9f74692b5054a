#include "shard/row_store.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/atomic_file.h"
#include "shard/index_checksum.h"

namespace mrl::shard {

namespace {

constexpr char kTableMagic[8] = {'M', 'R', 'L', 'R', 'O', 'W', 'S', '1'};
constexpr size_t kTableHeader = 8 + 8 + 8;  // magic, row_bytes, rows

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

void PutU64(std::string* out, uint64_t v) { out->append(reinterpret_cast<const char*>(&v), 8); }
uint64_t GetU64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

}  // namespace

RowStore::RowStore(std::string rows_path, size_t blob_bytes, int fd)
    : rows_path_(std::move(rows_path)),
      blob_bytes_(blob_bytes),
      row_bytes_(RowBytesFor(blob_bytes)),
      fd_(fd) {}

RowStore::~RowStore() {
  if (base_ != nullptr) ::munmap(base_, capacity_ * row_bytes_);
  if (fd_ >= 0) ::close(fd_);
}

Result<std::unique_ptr<RowStore>> RowStore::Open(const std::string& rows_path, size_t blob_bytes,
                                                 const std::string& table_path, bool* loaded,
                                                 std::string* reason) {
  *loaded = false;
  reason->clear();
  if (blob_bytes == 0) return Status::InvalidArgument("row store: rows of 0 bytes");
  const int fd = ::open(rows_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IoError(Errno("opening rows file '" + rows_path + "'"));
  std::unique_ptr<RowStore> s(new RowStore(rows_path, blob_bytes, fd));
  Status st = s->Load(table_path);
  if (st.ok()) {
    *loaded = true;
    return s;
  }
  // Any failure (missing, stale, corrupt, unreadable): start empty; the caller refills the rows
  // from RocksDB.
  *reason = st.message();
  s->ResetEmpty();
  if (::ftruncate(fd, 0) != 0) return Status::IoError(Errno("truncating '" + rows_path + "'"));
  return s;
}

void RowStore::ResetEmpty() {
  std::unique_lock lock(mu_);
  if (base_ != nullptr) ::munmap(base_, capacity_ * row_bytes_);
  base_ = nullptr;
  capacity_ = 0;
  id_of_row_.clear();
  free_rows_.clear();
  row_of_.clear();
  persisted_table_.clear();
}

Status RowStore::Load(const std::string& table_path) {
  std::error_code ec;
  if (table_path.empty() || !std::filesystem::exists(table_path, ec)) {
    return Status::NotFound("no row table for this generation");
  }
  MRL_RETURN_IF_ERROR(VerifyChecksum(table_path));
  auto bytes = ReadFile(table_path);
  if (!bytes.ok()) return bytes.status();
  const std::string& t = bytes.value();
  if (t.size() < kTableHeader || std::memcmp(t.data(), kTableMagic, 8) != 0) {
    return Status::Corruption("row table '" + table_path + "' has no MRLROWS1 header");
  }
  const uint64_t row_bytes = GetU64(t.data() + 8), rows = GetU64(t.data() + 16);
  if (row_bytes != row_bytes_) {
    return Status::Corruption("row table '" + table_path + "' has rows of " +
                              std::to_string(row_bytes) + " bytes, the collection " +
                              std::to_string(row_bytes_));
  }
  if (t.size() != kTableHeader + rows * 8 || rows > UINT32_MAX) {
    return Status::Corruption("row table '" + table_path + "' is " + std::to_string(t.size()) +
                              " bytes for " + std::to_string(rows) + " rows");
  }
  struct stat sb;
  if (::fstat(fd_, &sb) != 0) return Status::IoError(Errno("stat of '" + rows_path_ + "'"));
  if (static_cast<uint64_t>(sb.st_size) < rows * row_bytes_) {
    return Status::Corruption("rows file '" + rows_path_ + "' is " + std::to_string(sb.st_size) +
                              " bytes, the table names " + std::to_string(rows) + " rows");
  }
  std::unique_lock lock(mu_);
  id_of_row_.resize(rows);
  row_of_.reserve(rows);
  for (uint64_t r = 0; r < rows; ++r) {
    const uint64_t id = GetU64(t.data() + kTableHeader + r * 8);
    id_of_row_[r] = id;
    if (id == kFreeRow) {
      free_rows_.push_back(static_cast<uint32_t>(r));
    } else if (!row_of_.emplace(id, static_cast<uint32_t>(r)).second) {
      row_of_.clear();
      id_of_row_.clear();
      free_rows_.clear();
      return Status::Corruption("row table '" + table_path + "' names id " + std::to_string(id) +
                                " twice");
    }
  }
  capacity_ = static_cast<uint64_t>(sb.st_size) / row_bytes_;
  if (capacity_ > 0) {
    void* p = ::mmap(nullptr, capacity_ * row_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) {
      capacity_ = 0;
      return Status::IoError(Errno("mapping '" + rows_path_ + "'"));
    }
    base_ = static_cast<uint8_t*>(p);
    ::madvise(base_, capacity_ * row_bytes_, MADV_RANDOM);
  }
  persisted_table_ = table_path;
  return Status::Ok();
}

Status RowStore::Grow(uint64_t min_rows) {
  if (min_rows <= capacity_) return Status::Ok();
  // Grow by a quarter, at least 1024 rows, at most 64 MiB at a time: the file is allocated up
  // front, and doubling a 4 GB file would claim 4 GB of disk for one more row.
  const uint64_t step = std::clamp<uint64_t>(capacity_ / 4, 1024,
                                             std::max<uint64_t>(1024, (64u << 20) / row_bytes_));
  const uint64_t rows = std::max<uint64_t>(min_rows, capacity_ + step);
  const off_t old_len = static_cast<off_t>(capacity_ * row_bytes_);
  const off_t new_len = static_cast<off_t>(rows * row_bytes_);
  // Blocks are allocated now: a full disk fails here, not as a SIGBUS on a store through the
  // mapping later.
  const int rc = ::posix_fallocate(fd_, old_len, new_len - old_len);
  if (rc != 0) {
    errno = rc;
    const std::string what = Errno("growing rows file '" + rows_path_ + "' to " +
                                   std::to_string(new_len) + " bytes");
    return rc == ENOSPC ? Status::InsufficientStorage(what) : Status::IoError(what);
  }
  void* p = base_ == nullptr
                ? ::mmap(nullptr, new_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0)
                : ::mremap(base_, old_len, new_len, MREMAP_MAYMOVE);
  if (p == MAP_FAILED) return Status::IoError(Errno("mapping '" + rows_path_ + "'"));
  base_ = static_cast<uint8_t*>(p);
  capacity_ = rows;
  ::madvise(base_, new_len, MADV_RANDOM);
  return Status::Ok();
}

Status RowStore::Reserve(size_t n) {
  std::unique_lock lock(mu_);
  const uint64_t from_free = std::min<uint64_t>(n, free_rows_.size());
  return Grow(id_of_row_.size() + (n - from_free));
}

Status RowStore::Put(uint64_t id, const void* blob) {
  std::unique_lock lock(mu_);
  uint32_t row;
  auto it = row_of_.find(id);
  if (it != row_of_.end()) {
    row = it->second;
  } else {
    if (!free_rows_.empty()) {
      row = free_rows_.back();
      free_rows_.pop_back();
    } else {
      MRL_RETURN_IF_ERROR(Grow(id_of_row_.size() + 1));
      row = static_cast<uint32_t>(id_of_row_.size());
      id_of_row_.push_back(kFreeRow);
    }
    id_of_row_[row] = id;
    row_of_.emplace(id, row);
  }
  uint8_t* dst = base_ + static_cast<uint64_t>(row) * row_bytes_;
  std::memcpy(dst, blob, blob_bytes_);
  if (row_bytes_ > blob_bytes_) std::memset(dst + blob_bytes_, 0, row_bytes_ - blob_bytes_);
  return Status::Ok();
}

bool RowStore::Remove(uint64_t id) {
  std::unique_lock lock(mu_);
  auto it = row_of_.find(id);
  if (it == row_of_.end()) return false;
  id_of_row_[it->second] = kFreeRow;
  free_rows_.push_back(it->second);
  row_of_.erase(it);
  return true;
}

Status RowStore::Invalidate() {
  if (persisted_table_.empty()) return Status::Ok();
  const std::string table = persisted_table_;
  std::error_code ec;
  std::filesystem::remove(IndexChecksumPath(table), ec);
  if (!std::filesystem::remove(table, ec) && ec) {
    return Status::IoError("removing row table '" + table + "': " + ec.message());
  }
  const std::string dir = std::filesystem::path(table).parent_path().string();
  const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return Status::IoError(Errno("opening directory of '" + table + "'"));
  const int rc = ::fsync(dfd);
  ::close(dfd);
  if (rc != 0) return Status::IoError(Errno("syncing directory of '" + table + "'"));
  persisted_table_.clear();
  return Status::Ok();
}

Status RowStore::Persist(const std::string& table_path) {
  std::string table;
  {
    std::shared_lock lock(mu_);
    if (::fdatasync(fd_) != 0) return Status::IoError(Errno("syncing '" + rows_path_ + "'"));
    table.reserve(kTableHeader + id_of_row_.size() * 8);
    table.append(kTableMagic, 8);
    PutU64(&table, row_bytes_);
    PutU64(&table, id_of_row_.size());
    for (uint64_t id : id_of_row_) PutU64(&table, id);
  }
  MRL_RETURN_IF_ERROR(WriteChecksumOf(table_path, table));
  MRL_RETURN_IF_ERROR(WriteFileAtomic(table_path, table));
  persisted_table_ = table_path;
  return Status::Ok();
}

uint64_t RowStore::size() const {
  std::shared_lock lock(mu_);
  return row_of_.size();
}

uint64_t RowStore::file_bytes() const {
  std::shared_lock lock(mu_);
  return capacity_ * row_bytes_;
}

uint64_t RowStore::table_bytes() const {
  std::shared_lock lock(mu_);
  // unordered_map: a node (id, row, next, hash) per entry plus the bucket array.
  return id_of_row_.capacity() * 8 + free_rows_.capacity() * 4 + row_of_.size() * 32 +
         row_of_.bucket_count() * sizeof(void*);
}

void RowStore::Prefetch(const uint8_t* row) const {
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t start = reinterpret_cast<uintptr_t>(row) & ~(page - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(row) + blob_bytes_;
  ::madvise(reinterpret_cast<void*>(start), end - start, MADV_WILLNEED);
}

Status RowStore::Evict() {
  std::unique_lock lock(mu_);
  if (base_ == nullptr) return Status::Ok();
  if (::fdatasync(fd_) != 0) return Status::IoError(Errno("syncing '" + rows_path_ + "'"));
  if (::madvise(base_, capacity_ * row_bytes_, MADV_DONTNEED) != 0) {
    return Status::IoError(Errno("madvise DONTNEED on '" + rows_path_ + "'"));
  }
  const int rc = ::posix_fadvise(fd_, 0, 0, POSIX_FADV_DONTNEED);
  if (rc != 0) {
    errno = rc;
    return Status::IoError(Errno("fadvise DONTNEED on '" + rows_path_ + "'"));
  }
  ::madvise(base_, capacity_ * row_bytes_, MADV_RANDOM);
  return Status::Ok();
}

uint64_t RowStore::resident_bytes() const {
  std::shared_lock lock(mu_);
  if (base_ == nullptr) return 0;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t len = capacity_ * row_bytes_;
  std::vector<unsigned char> vec((len + page - 1) / page);
  if (::mincore(base_, len, vec.data()) != 0) return 0;
  uint64_t pages = 0;
  for (unsigned char v : vec) pages += v & 1;
  return pages * page;
}

}  // namespace mrl::shard
