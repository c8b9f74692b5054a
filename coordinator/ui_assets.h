// The web console's static files (coordinator/ui/), compiled into the coordinator by
// coordinator/ui/embed.cmake and served under /ui/ (docs/console.md). They hold no data: every
// figure the pages show comes from the API, with the token the page asks for.
#pragma once

#include <span>
#include <string_view>

namespace mrl::coord {

struct UiAsset {
  std::string_view path;          // relative to /ui/, e.g. "app.js"
  std::string_view content_type;  // by extension
  std::string_view body;
};

// Every file, in the order of coordinator/ui/'s listing in CMakeLists.txt.
std::span<const UiAsset> UiAssets();

// The file served for a request target under /ui ("/ui" and "/ui/" are index.html); nullptr
// for anything else (only the listed files are served: no path reaches the filesystem).
inline const UiAsset* FindUiAsset(std::string_view target) {
  if (target == "/ui" || target == "/ui/") target = "/ui/index.html";
  if (!target.starts_with("/ui/")) return nullptr;
  target.remove_prefix(4);
  for (const UiAsset& a : UiAssets()) {
    if (a.path == target) return &a;
  }
  return nullptr;
}

}  // namespace mrl::coord
