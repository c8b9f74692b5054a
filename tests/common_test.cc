#include <gtest/gtest.h>

#include "tests/test_util.h"
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/atomic_file.h"
#include "common/npy.h"

namespace fs = std::filesystem;

namespace mrl {
namespace {

using ::mrl::test_util::TempDir;

TEST(Npy, RoundTripsFloatMatrixAndLabels) {
  const std::string dir = TempDir("npy");
  std::vector<float> m = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, 1e-3f};
  ASSERT_TRUE(WriteNpy(dir + "/m.npy", NpyDtype::kFloat32, {2, 3}, m.data()).ok());
  auto back = ReadNpy(dir + "/m.npy");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(back->dtype, NpyDtype::kFloat32);
  for (size_t i = 0; i < m.size(); ++i) EXPECT_EQ(back->as<float>()[i], m[i]);

  std::vector<int32_t> labels = {3, 1, 4, 1, 5};
  ASSERT_TRUE(WriteNpy(dir + "/l.npy", NpyDtype::kInt32, {5}, labels.data()).ok());
  auto l = ReadNpyLabels(dir + "/l.npy");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(*l, (std::vector<int64_t>{3, 1, 4, 1, 5}));
  // Header is padded to a 64-byte boundary as numpy requires.
  const std::string bytes = EncodeNpy(NpyDtype::kFloat32, {2, 3}, m.data());
  EXPECT_EQ((bytes.size() - m.size() * 4) % 64, 0u);
}

TEST(Npy, RejectsTruncatedAndForeignFiles) {
  const std::string dir = TempDir("npy_bad");
  std::vector<float> m(12, 1.0f);
  std::string bytes = EncodeNpy(NpyDtype::kFloat32, {3, 4}, m.data());
  auto truncated = ParseNpy(bytes.substr(0, bytes.size() - 4), "t.npy");
  ASSERT_FALSE(truncated.ok());
  EXPECT_EQ(truncated.status().code(), Status::Code::kCorruption);
  EXPECT_NE(truncated.status().message().find("t.npy"), std::string::npos);
  auto garbage = ParseNpy("hello world, not numpy", "g.npy");
  ASSERT_FALSE(garbage.ok());
  EXPECT_NE(garbage.status().message().find("bad magic"), std::string::npos);
  auto missing = ReadNpy(dir + "/nope.npy");
  EXPECT_EQ(missing.status().code(), Status::Code::kNotFound);
  // Labels must be 1-D integers.
  ASSERT_TRUE(WriteNpy(dir + "/f.npy", NpyDtype::kFloat32, {12}, m.data()).ok());
  EXPECT_FALSE(ReadNpyLabels(dir + "/f.npy").ok());
}

TEST(AtomicFile, ReplacesWholeFileAndLeavesNoTemporary) {
  const std::string dir = TempDir("atomic");
  const std::string path = dir + "/data.bin";
  ASSERT_TRUE(WriteFileAtomic(path, "first version").ok());
  ASSERT_TRUE(WriteFileAtomic(path, "second").ok());
  auto got = ReadFile(path);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, "second");
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir)) files += e.is_regular_file() ? 1 : 0;
  EXPECT_EQ(files, 1);
}

TEST(AtomicFile, FailsCleanlyInMissingOrReadOnlyPlaces) {
  const std::string dir = TempDir("atomic_ro");
  Status st = WriteFileAtomic(dir + "/no/such/dir/file", "x");
  EXPECT_EQ(st.code(), Status::Code::kIoError);
  // A regular file cannot be used as an output directory.
  ASSERT_TRUE(WriteFileAtomic(dir + "/plain", "x").ok());
  Status not_dir = EnsureWritableDir(dir + "/plain");
  EXPECT_FALSE(not_dir.ok());
  EXPECT_NE(not_dir.message().find("plain"), std::string::npos);
  EXPECT_TRUE(EnsureWritableDir(dir + "/a/b/c").ok());
}

}  // namespace
}  // namespace mrl
