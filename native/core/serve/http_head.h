// The head of a request the native socket path answers itself, read from its bytes.
//
// The form is a strict part of lib/server/direct-head.ts's (the TypeScript path's) direct form:
//   POST /v1/models/<served model>/predict HTTP/1.1
// with one Host, one Content-Length of 1-15 digits, a JSON Content-Type (or none), no Accept
// that asks for octet-stream, Connection tokens keep-alive only, and no Transfer-Encoding,
// Content-Encoding, Expect or Upgrade; field lines `name:value` with a token name and only tab
// and printable ASCII in the value. Whatever else (an octet-stream body, Connection: close, any
// other request) is not this form, and the caller leaves it to the TypeScript path, which
// answers it as it always has.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace mlpkit::serve {

struct HotHead {
  // Index into the served names.
  std::size_t model = 0;
  // Content-Length.
  std::size_t length = 0;
};

// Whether b[0, end) (request line and fields, without the blank line that ends the head) is of
// the form above; fills `head` when it is.
bool parse_hot_head(const unsigned char* b, std::size_t end, const std::vector<std::string>& models, HotHead& head);

}  // namespace mlpkit::serve
