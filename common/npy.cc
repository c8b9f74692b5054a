#include "common/npy.h"

#include <cstring>
#include <regex>

#include "common/atomic_file.h"

namespace mrl {

const char* NpyDescr(NpyDtype dtype) {
  switch (dtype) {
    case NpyDtype::kFloat32: return "<f4";
    case NpyDtype::kFloat16: return "<f2";
    case NpyDtype::kInt64: return "<i8";
    case NpyDtype::kInt32: return "<i4";
    case NpyDtype::kUInt64: return "<u8";
    case NpyDtype::kUInt8: return "|u1";
    case NpyDtype::kInt8: return "|i1";
  }
  return "?";
}

size_t NpyItemSize(NpyDtype dtype) {
  switch (dtype) {
    case NpyDtype::kFloat32: return 4;
    case NpyDtype::kFloat16: return 2;
    case NpyDtype::kInt64: return 8;
    case NpyDtype::kInt32: return 4;
    case NpyDtype::kUInt64: return 8;
    case NpyDtype::kUInt8: return 1;
    case NpyDtype::kInt8: return 1;
  }
  return 0;
}

int64_t NpyArray::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

namespace {

bool DescrToDtype(const std::string& d, NpyDtype* out) {
  static const std::pair<const char*, NpyDtype> kTable[] = {
      {"<f4", NpyDtype::kFloat32}, {"<f2", NpyDtype::kFloat16}, {"<i8", NpyDtype::kInt64},
      {"<i4", NpyDtype::kInt32},   {"<u8", NpyDtype::kUInt64},  {"|u1", NpyDtype::kUInt8},
      {"<u1", NpyDtype::kUInt8},   {"|i1", NpyDtype::kInt8},    {"<i1", NpyDtype::kInt8}};
  for (const auto& [name, dt] : kTable) {
    if (d == name) {
      *out = dt;
      return true;
    }
  }
  return false;
}

}  // namespace

Result<NpyArray> ParseNpy(const std::string& bytes, const std::string& name) {
  static const char kMagic[] = "\x93NUMPY";
  if (bytes.size() < 10 || std::memcmp(bytes.data(), kMagic, 6) != 0) {
    return Status::Corruption("'" + name + "' is not a .npy file (bad magic)");
  }
  const uint8_t major = static_cast<uint8_t>(bytes[6]);
  size_t header_len = 0, offset = 0;
  if (major == 1) {
    header_len = static_cast<uint8_t>(bytes[8]) | (static_cast<uint8_t>(bytes[9]) << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) return Status::Corruption("'" + name + "': truncated .npy header");
    uint32_t len = 0;
    std::memcpy(&len, bytes.data() + 8, 4);
    header_len = len;
    offset = 12;
  } else {
    return Status::Corruption("'" + name + "': unsupported .npy version " + std::to_string(major));
  }
  if (offset + header_len > bytes.size()) {
    return Status::Corruption("'" + name + "': truncated .npy header");
  }
  const std::string header = bytes.substr(offset, header_len);
  std::smatch m;
  static const std::regex kDescr(R"('descr'\s*:\s*'([^']+)')");
  static const std::regex kOrder(R"('fortran_order'\s*:\s*(True|False))");
  static const std::regex kShape(R"('shape'\s*:\s*\(([^)]*)\))");
  if (!std::regex_search(header, m, kDescr)) {
    return Status::Corruption("'" + name + "': .npy header has no descr");
  }
  NpyArray arr;
  if (!DescrToDtype(m[1].str(), &arr.dtype)) {
    return Status::InvalidArgument("'" + name + "': unsupported .npy dtype '" + m[1].str() +
                                   "' (need little-endian f4/f2/i8/i4/u8/u1/i1)");
  }
  if (!std::regex_search(header, m, kOrder)) {
    return Status::Corruption("'" + name + "': .npy header has no fortran_order");
  }
  if (m[1].str() == "True") {
    return Status::InvalidArgument("'" + name + "': Fortran-order .npy is not supported");
  }
  if (!std::regex_search(header, m, kShape)) {
    return Status::Corruption("'" + name + "': .npy header has no shape");
  }
  const std::string dims = m[1].str();
  static const std::regex kInt(R"(\d+)");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), kInt); it != std::sregex_iterator();
       ++it) {
    arr.shape.push_back(std::stoll(it->str()));
  }
  const size_t data_offset = offset + header_len;
  const uint64_t want = static_cast<uint64_t>(arr.numel()) * NpyItemSize(arr.dtype);
  if (bytes.size() - data_offset != want) {
    return Status::Corruption("'" + name + "': expected " + std::to_string(want) +
                              " data bytes for its shape, found " +
                              std::to_string(bytes.size() - data_offset));
  }
  arr.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(data_offset), bytes.end());
  return arr;
}

Result<NpyArray> ReadNpy(const std::string& path) {
  auto bytes = ReadFile(path);
  if (!bytes.ok()) return bytes.status();
  return ParseNpy(bytes.value(), path);
}

std::string EncodeNpyHeader(NpyDtype dtype, const std::vector<int64_t>& shape) {
  std::string shape_str = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    shape_str += std::to_string(shape[i]);
    shape_str += (shape.size() == 1 || i + 1 < shape.size()) ? "," : "";
    if (i + 1 < shape.size()) shape_str += " ";
  }
  shape_str += ")";
  std::string header = std::string("{'descr': '") + NpyDescr(dtype) +
                       "', 'fortran_order': False, 'shape': " + shape_str + ", }";
  // Pad so that magic(6)+version(2)+len(2)+header is a multiple of 64, ending in '\n'.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::string out("\x93NUMPY\x01\x00", 8);
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>((header.size() >> 8) & 0xff));
  out += header;
  return out;
}

std::string EncodeNpy(NpyDtype dtype, const std::vector<int64_t>& shape, const void* data) {
  int64_t n = 1;
  for (int64_t v : shape) n *= v;
  std::string out = EncodeNpyHeader(dtype, shape);
  out.append(static_cast<const char*>(data), static_cast<size_t>(n) * NpyItemSize(dtype));
  return out;
}

Status WriteNpy(const std::string& path, NpyDtype dtype, const std::vector<int64_t>& shape,
                const void* data) {
  return WriteFileAtomic(path, EncodeNpy(dtype, shape, data));
}

Result<std::vector<int64_t>> ReadNpyLabels(const std::string& path) {
  auto arr = ReadNpy(path);
  if (!arr.ok()) return arr.status();
  const NpyArray& a = arr.value();
  if (a.shape.size() != 1) {
    return Status::InvalidArgument("'" + path + "': labels must be 1-D, got " +
                                   std::to_string(a.shape.size()) + "-D");
  }
  std::vector<int64_t> out(static_cast<size_t>(a.numel()));
  for (size_t i = 0; i < out.size(); ++i) {
    switch (a.dtype) {
      case NpyDtype::kInt64: out[i] = a.as<int64_t>()[i]; break;
      case NpyDtype::kInt32: out[i] = a.as<int32_t>()[i]; break;
      case NpyDtype::kUInt64: out[i] = static_cast<int64_t>(a.as<uint64_t>()[i]); break;
      case NpyDtype::kUInt8: out[i] = a.as<uint8_t>()[i]; break;
      case NpyDtype::kInt8: out[i] = a.as<int8_t>()[i]; break;
      default:
        return Status::InvalidArgument("'" + path + "': labels must have an integer dtype");
    }
  }
  return out;
}

}  // namespace mrl
