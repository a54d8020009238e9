#include "common/tokenizer/sp_processor.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

namespace linearize::tokenizer {
namespace {

// The shim's functions (sp_shim.cc), resolved once.
struct Shim {
  void* (*create)() = nullptr;
  void (*destroy)(void*) = nullptr;
  char* (*load)(void*, const char*) = nullptr;
  int (*encode_ids)(void*, const char*, size_t, int**, size_t*) = nullptr;
  int (*encode_pieces)(void*, const char*, size_t, char**, size_t*) = nullptr;
  int (*piece_size)(void*) = nullptr;
  char* (*id_to_piece)(void*, int, size_t*) = nullptr;
  int (*piece_to_id)(void*, const char*, size_t) = nullptr;
  int (*is)(void*, int, int) = nullptr;
  int (*special_id)(void*, int) = nullptr;
  std::string error;
};

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LINEARIZE_NO_DEEPBIND 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define LINEARIZE_NO_DEEPBIND 1
#endif

const Shim& GetShim() {
  static Shim shim;
  static std::once_flag once;
  std::call_once(once, [] {
    // Deep binding keeps sentencepiece's embedded protobuf to itself (see
    // sp_shim.cc); AddressSanitizer cannot run with it, and the sanitized
    // fuzzers load no libprotobuf anyway.
    int flags = RTLD_NOW | RTLD_LOCAL;
#ifndef LINEARIZE_NO_DEEPBIND
    flags |= RTLD_DEEPBIND;
#endif
    std::vector<std::string> candidates;
    if (const char* env = std::getenv("LINEARIZE_SP_SHIM")) candidates.push_back(env);
    candidates.push_back(LINEARIZE_SP_SHIM_PATH);
    candidates.push_back("liblinearize_sp.so");
    void* lib = nullptr;
    for (const std::string& c : candidates) {
      lib = dlopen(c.c_str(), flags);
      if (lib != nullptr) break;
      shim.error += std::string(dlerror()) + "; ";
    }
    if (lib == nullptr) return;
    auto sym = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
      if (fn == nullptr) shim.error += std::string("missing ") + name + "; ";
    };
    sym(shim.create, "lzsp_new");
    sym(shim.destroy, "lzsp_delete");
    sym(shim.load, "lzsp_load");
    sym(shim.encode_ids, "lzsp_encode_ids");
    sym(shim.encode_pieces, "lzsp_encode_pieces");
    sym(shim.piece_size, "lzsp_piece_size");
    sym(shim.id_to_piece, "lzsp_id_to_piece");
    sym(shim.piece_to_id, "lzsp_piece_to_id");
    sym(shim.is, "lzsp_is");
    sym(shim.special_id, "lzsp_special_id");
    if (shim.create != nullptr && shim.special_id != nullptr) shim.error.clear();
  });
  return shim;
}

std::string Take(char* s, size_t n) {
  std::string out(s, n);
  std::free(s);
  return out;
}

}  // namespace

struct SpProcessor::Impl {
  const Shim& shim = GetShim();
  void* sp = nullptr;
  bool loaded = false;
};

SpProcessor::SpProcessor() : impl_(std::make_unique<Impl>()) {
  if (impl_->shim.error.empty()) impl_->sp = impl_->shim.create();
}

SpProcessor::~SpProcessor() {
  if (impl_->sp != nullptr) impl_->shim.destroy(impl_->sp);
}

std::string SpProcessor::Load(const std::string& path) {
  if (impl_->sp == nullptr) {
    return "cannot load the SentencePiece library (liblinearize_sp.so): " + impl_->shim.error;
  }
  char* err = impl_->shim.load(impl_->sp, path.c_str());
  if (err != nullptr) {
    std::string message = err;
    std::free(err);
    return message;
  }
  impl_->loaded = true;
  return {};
}

bool SpProcessor::Encode(std::string_view text, std::vector<int>* ids) const {
  if (!impl_->loaded) return false;
  int* out = nullptr;
  size_t n = 0;
  if (impl_->shim.encode_ids(impl_->sp, text.data(), text.size(), &out, &n) != 0) return false;
  ids->assign(out, out + n);
  std::free(out);
  return true;
}

bool SpProcessor::EncodePieces(std::string_view text, std::vector<std::string>* pieces) const {
  if (!impl_->loaded) return false;
  char* out = nullptr;
  size_t bytes = 0;
  if (impl_->shim.encode_pieces(impl_->sp, text.data(), text.size(), &out, &bytes) != 0) {
    return false;
  }
  pieces->clear();
  for (size_t start = 0; start < bytes;) {
    const size_t end = std::string_view(out + start, bytes - start).find('\0') + start;
    pieces->emplace_back(out + start, end - start);
    start = end + 1;
  }
  std::free(out);
  return true;
}

int SpProcessor::PieceSize() const { return impl_->loaded ? impl_->shim.piece_size(impl_->sp) : 0; }

std::string SpProcessor::IdToPiece(int id) const {
  if (!impl_->loaded) return {};
  size_t n = 0;
  char* s = impl_->shim.id_to_piece(impl_->sp, id, &n);
  return s == nullptr ? std::string() : Take(s, n);
}

int SpProcessor::PieceToId(std::string_view piece) const {
  return impl_->loaded ? impl_->shim.piece_to_id(impl_->sp, piece.data(), piece.size()) : 0;
}
bool SpProcessor::IsControl(int id) const { return impl_->loaded && impl_->shim.is(impl_->sp, 0, id); }
bool SpProcessor::IsUnknown(int id) const { return impl_->loaded && impl_->shim.is(impl_->sp, 1, id); }
bool SpProcessor::IsByte(int id) const { return impl_->loaded && impl_->shim.is(impl_->sp, 2, id); }
int SpProcessor::bos_id() const { return impl_->loaded ? impl_->shim.special_id(impl_->sp, 0) : -1; }
int SpProcessor::eos_id() const { return impl_->loaded ? impl_->shim.special_id(impl_->sp, 1) : -1; }

}  // namespace linearize::tokenizer
