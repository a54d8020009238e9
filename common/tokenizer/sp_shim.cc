// liblinearize_sp.so: libsentencepiece behind a C interface, loaded by
// sp_processor.cc with dlopen(RTLD_LOCAL | RTLD_DEEPBIND).
//
// Why: Debian's libsentencepiece embeds its own protobuf-lite (3.14) and
// exports those symbols. In a process that also loads libprotobuf (3.21, for
// gRPC), whichever library is found first serves both, and the other one
// crashes (libprotobuf already does in its static initialisers). Loaded
// locally and deep-bound, sentencepiece keeps its own copies out of the
// global scope.
#include <sentencepiece_processor.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

char* Copy(const std::string& s, size_t* n) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out == nullptr) return nullptr;
  std::memcpy(out, s.data(), s.size());
  out[s.size()] = '\0';
  if (n != nullptr) *n = s.size();
  return out;
}

sentencepiece::SentencePieceProcessor* Sp(void* p) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(p);
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) void* lzsp_new() {
  return new sentencepiece::SentencePieceProcessor();
}

__attribute__((visibility("default"))) void lzsp_delete(void* p) { delete Sp(p); }

// Returns null on success, else a malloc'd message.
__attribute__((visibility("default"))) char* lzsp_load(void* p, const char* path) {
  const auto status = Sp(p)->Load(path);
  return status.ok() ? nullptr : Copy(status.ToString(), nullptr);
}

// ids: malloc'd array (caller frees). Returns 0 on success.
__attribute__((visibility("default"))) int lzsp_encode_ids(void* p, const char* text, size_t len,
                                                           int** ids, size_t* n) {
  std::vector<int> out;
  if (!Sp(p)->Encode(std::string(text, len), &out).ok()) return 1;
  *ids = static_cast<int*>(std::malloc((out.size() + 1) * sizeof(int)));
  if (*ids == nullptr) return 1;
  std::memcpy(*ids, out.data(), out.size() * sizeof(int));
  *n = out.size();
  return 0;
}

// pieces: one malloc'd buffer of the pieces, each followed by '\0'.
__attribute__((visibility("default"))) int lzsp_encode_pieces(void* p, const char* text,
                                                              size_t len, char** pieces,
                                                              size_t* bytes) {
  std::vector<std::string> out;
  if (!Sp(p)->Encode(std::string(text, len), &out).ok()) return 1;
  std::string joined;
  for (const std::string& s : out) {
    joined += s;
    joined.push_back('\0');
  }
  *pieces = Copy(joined, bytes);
  return *pieces == nullptr ? 1 : 0;
}

__attribute__((visibility("default"))) int lzsp_piece_size(void* p) { return Sp(p)->GetPieceSize(); }

__attribute__((visibility("default"))) char* lzsp_id_to_piece(void* p, int id, size_t* n) {
  return Copy(Sp(p)->IdToPiece(id), n);
}

__attribute__((visibility("default"))) int lzsp_piece_to_id(void* p, const char* piece, size_t len) {
  return Sp(p)->PieceToId(std::string(piece, len));
}

// kind: 0 control, 1 unknown, 2 byte.
__attribute__((visibility("default"))) int lzsp_is(void* p, int kind, int id) {
  switch (kind) {
    case 0: return Sp(p)->IsControl(id);
    case 1: return Sp(p)->IsUnknown(id);
    default: return Sp(p)->IsByte(id);
  }
}

// which: 0 bos, 1 eos.
__attribute__((visibility("default"))) int lzsp_special_id(void* p, int which) {
  return which == 0 ? Sp(p)->bos_id() : Sp(p)->eos_id();
}

}  // extern "C"
