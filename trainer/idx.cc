#include "trainer/idx.h"

#include <zlib.h>

#include <filesystem>

namespace mrl {
namespace {

Result<std::string> ReadMaybeGzip(const std::string& path) {
  if (!std::filesystem::exists(path)) return Status::NotFound("dataset file '" + path + "' not found");
  gzFile f = gzopen(path.c_str(), "rb");  // reads plain files transparently too
  if (f == nullptr) return Status::IoError("cannot open '" + path + "'");
  std::string out;
  char buf[1 << 16];
  while (true) {
    int n = gzread(f, buf, sizeof(buf));
    if (n < 0) {
      int err = 0;
      std::string msg = gzerror(f, &err);
      gzclose(f);
      return Status::Corruption("'" + path + "' is corrupt: " + msg);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  // A truncated gzip stream reads as a short file without error on some zlib versions: the IDX
  // size check below catches that.
  gzclose(f);
  return out;
}

uint32_t BigEndian32(const std::string& s, size_t off) {
  return (static_cast<uint32_t>(static_cast<uint8_t>(s[off])) << 24) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[off + 1])) << 16) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[off + 2])) << 8) |
         static_cast<uint32_t>(static_cast<uint8_t>(s[off + 3]));
}

std::string FindFile(const std::string& dir, const std::string& stem) {
  namespace fs = std::filesystem;
  for (const std::string& name : {stem + ".gz", stem}) {
    if (fs::exists(fs::path(dir) / name)) return (fs::path(dir) / name).string();
  }
  return (fs::path(dir) / (stem + ".gz")).string();
}

}  // namespace

Result<IdxArray> ReadIdx(const std::string& path) {
  auto bytes = ReadMaybeGzip(path);
  if (!bytes.ok()) return bytes.status();
  const std::string& s = bytes.value();
  if (s.size() < 4 || s[0] != 0 || s[1] != 0) {
    return Status::Corruption("'" + path + "' is not an IDX file (bad magic)");
  }
  if (static_cast<uint8_t>(s[2]) != 0x08) {
    return Status::InvalidArgument("'" + path + "': only unsigned-byte IDX data is supported");
  }
  const int ndim = static_cast<uint8_t>(s[3]);
  if (ndim < 1 || ndim > 4 || s.size() < 4 + 4 * static_cast<size_t>(ndim)) {
    return Status::Corruption("'" + path + "': bad IDX header");
  }
  IdxArray arr;
  uint64_t n = 1;
  for (int i = 0; i < ndim; ++i) {
    arr.dims.push_back(BigEndian32(s, 4 + 4 * static_cast<size_t>(i)));
    n *= static_cast<uint64_t>(arr.dims.back());
  }
  const size_t off = 4 + 4 * static_cast<size_t>(ndim);
  if (s.size() - off != n) {
    return Status::Corruption("'" + path + "': header promises " + std::to_string(n) +
                              " bytes of data, file has " + std::to_string(s.size() - off) +
                              " (truncated or corrupt)");
  }
  arr.data.assign(s.begin() + static_cast<std::ptrdiff_t>(off), s.end());
  return arr;
}

namespace {

Result<ImageSet> LoadSplit(const std::string& dir, const std::string& prefix) {
  auto images = ReadIdx(FindFile(dir, prefix + "-images-idx3-ubyte"));
  if (!images.ok()) return images.status();
  auto labels = ReadIdx(FindFile(dir, prefix + "-labels-idx1-ubyte"));
  if (!labels.ok()) return labels.status();
  if (images->dims.size() != 3) {
    return Status::Corruption(prefix + " images: expected 3-D IDX, got " +
                              std::to_string(images->dims.size()) + "-D");
  }
  if (labels->dims.size() != 1 || labels->dims[0] != images->dims[0]) {
    return Status::Corruption(prefix + ": " + std::to_string(images->dims[0]) + " images but " +
                              std::to_string(labels->dims.empty() ? 0 : labels->dims[0]) +
                              " labels");
  }
  ImageSet set;
  set.count = images->dims[0];
  set.height = images->dims[1];
  set.width = images->dims[2];
  set.channels = 1;
  set.pixels = std::move(images->data);
  set.labels.reserve(labels->data.size());
  for (uint8_t l : labels->data) {
    if (l >= 10) return Status::Corruption(prefix + " labels: label " + std::to_string(l) + " >= 10");
    set.labels.push_back(l);
  }
  return set;
}

}  // namespace

Result<FashionMnist> LoadFashionMnist(const std::string& dir) {
  if (!std::filesystem::is_directory(dir)) {
    return Status::NotFound("Fashion-MNIST directory '" + dir +
                            "' not found (install Debian's dataset-fashion-mnist or set "
                            "data.fmnist_dir)");
  }
  FashionMnist out;
  auto train = LoadSplit(dir, "train");
  if (!train.ok()) return train.status();
  auto test = LoadSplit(dir, "t10k");
  if (!test.ok()) return test.status();
  out.train = std::move(train.value());
  out.test = std::move(test.value());
  return out;
}

}  // namespace mrl
