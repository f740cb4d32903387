#include "core/serve/http_head.h"

#include <cstring>

namespace mlpkit::serve {
namespace {

constexpr char kLineStart[] = "POST /v1/models/";
constexpr char kLineEnd[] = "/predict HTTP/1.1";

// RFC 9110 token characters: what a field name may hold.
bool is_token(unsigned char c) {
  if (c >= 'a' && c <= 'z') return true;
  if (c >= 'A' && c <= 'Z') return true;
  if (c >= '0' && c <= '9') return true;
  return c != 0 && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

// b[from, to) is `lower` (lowercase letters and punctuation) with its letters in any case.
bool equals_ignoring_case(const unsigned char* b, std::size_t from, std::size_t to, const char* lower) {
  const std::size_t n = std::strlen(lower);
  if (to - from != n) return false;
  for (std::size_t i = 0; i < n; ++i) {
    unsigned char c = b[from + i];
    if (c >= 'A' && c <= 'Z') c = static_cast<unsigned char>(c + 32);
    if (c != static_cast<unsigned char>(lower[i])) return false;
  }
  return true;
}

// Whether b[from, to) holds `lower` anywhere, ignoring case.
bool contains_ignoring_case(const unsigned char* b, std::size_t from, std::size_t to, const char* lower) {
  const std::size_t n = std::strlen(lower);
  for (std::size_t at = from; at + n <= to; ++at) {
    if (equals_ignoring_case(b, at, at + n, lower)) return true;
  }
  return false;
}

bool starts_with_ignoring_case(const unsigned char* b, std::size_t from, std::size_t to, const char* lower) {
  const std::size_t n = std::strlen(lower);
  return to - from >= n && equals_ignoring_case(b, from, from + n, lower);
}

enum class Field { Other, Host, ContentLength, ContentType, Accept, Connection, Refused };

Field field_of(const unsigned char* b, std::size_t from, std::size_t to) {
  if (equals_ignoring_case(b, from, to, "host")) return Field::Host;
  if (equals_ignoring_case(b, from, to, "content-length")) return Field::ContentLength;
  if (equals_ignoring_case(b, from, to, "content-type")) return Field::ContentType;
  if (equals_ignoring_case(b, from, to, "accept")) return Field::Accept;
  if (equals_ignoring_case(b, from, to, "connection")) return Field::Connection;
  if (equals_ignoring_case(b, from, to, "transfer-encoding") || equals_ignoring_case(b, from, to, "content-encoding") ||
      equals_ignoring_case(b, from, to, "expect") || equals_ignoring_case(b, from, to, "upgrade")) {
    return Field::Refused;
  }
  return Field::Other;
}

// The Content-Type values direct-head.ts and predict.ts's isJsonType read as a JSON body: a
// lowercase value that does not start with application/octet-stream and holds "json" or starts
// with text/plain or application/x-www-form-urlencoded. (An empty value counts as none.)
bool is_json_type(const unsigned char* b, std::size_t from, std::size_t to) {
  if (starts_with_ignoring_case(b, from, to, "application/octet-stream")) return false;
  return contains_ignoring_case(b, from, to, "json") || starts_with_ignoring_case(b, from, to, "text/plain") ||
         starts_with_ignoring_case(b, from, to, "application/x-www-form-urlencoded");
}

// Connection's comma-separated tokens: only keep-alive (or empty ones) keep the hot form.
bool keeps_alive(const unsigned char* b, std::size_t from, std::size_t to) {
  std::size_t i = from;
  while (i <= to) {
    std::size_t end = i;
    while (end < to && b[end] != ',') ++end;
    std::size_t a = i, z = end;
    while (a < z && (b[a] == ' ' || b[a] == '\t')) ++a;
    while (z > a && (b[z - 1] == ' ' || b[z - 1] == '\t')) --z;
    if (z > a && !equals_ignoring_case(b, a, z, "keep-alive")) return false;
    i = end + 1;
  }
  return true;
}

}  // namespace

bool parse_hot_head(const unsigned char* b, std::size_t end, const std::vector<std::string>& models, HotHead& head) {
  const std::size_t start_len = sizeof kLineStart - 1;
  const std::size_t end_len = sizeof kLineEnd - 1;
  if (end < start_len || std::memcmp(b, kLineStart, start_len) != 0) return false;
  std::size_t i = start_len;
  while (i < end && b[i] != '/') ++i;
  if (i >= end) return false;
  const std::size_t name_len = i - start_len;
  bool found = false;
  for (std::size_t m = 0; m < models.size() && !found; ++m) {
    if (models[m].size() == name_len && std::memcmp(models[m].data(), b + start_len, name_len) == 0) {
      head.model = m;
      found = true;
    }
  }
  if (!found) return false;
  if (end - i < end_len || std::memcmp(b + i, kLineEnd, end_len) != 0) return false;
  i += end_len;

  bool host = false, length_seen = false, type_seen = false;
  std::size_t length = 0;
  while (i < end) {
    if (b[i] != '\r' || i + 1 >= end || b[i + 1] != '\n') return false;
    i += 2;
    const std::size_t name_at = i;
    while (i < end && is_token(b[i])) ++i;
    if (i == name_at || i >= end || b[i] != ':') return false;
    const Field field = field_of(b, name_at, i);
    ++i;
    while (i < end && (b[i] == ' ' || b[i] == '\t')) ++i;
    const std::size_t value_at = i;
    std::size_t value_end = i;  // after the value's last non-blank byte
    for (; i < end; ++i) {
      const unsigned char c = b[i];
      if (c == '\r') break;
      if (c > '~' || (c < ' ' && c != '\t')) return false;
      if (c != ' ' && c != '\t') value_end = i + 1;
    }
    switch (field) {
      case Field::Host:
        if (host) return false;
        host = true;
        break;
      case Field::ContentLength:
        if (length_seen || value_end == value_at || value_end - value_at > 15) return false;
        for (std::size_t k = value_at; k < value_end; ++k) {
          if (b[k] < '0' || b[k] > '9') return false;
          length = length * 10 + (b[k] - '0');
        }
        length_seen = true;
        break;
      case Field::ContentType:
        if (type_seen) return false;
        type_seen = true;
        if (value_end > value_at && !is_json_type(b, value_at, value_end)) return false;
        break;
      case Field::Accept:
        if (contains_ignoring_case(b, value_at, value_end, "octet-stream")) return false;
        break;
      case Field::Connection:
        if (!keeps_alive(b, value_at, value_end)) return false;
        break;
      case Field::Refused:
        return false;
      case Field::Other:
        break;
    }
  }
  if (!host || !length_seen) return false;
  head.length = length;
  return true;
}

}  // namespace mlpkit::serve
