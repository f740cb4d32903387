#include "core/serve/json_rows.h"

#include <cfloat>
#include <charconv>
#include <cmath>
#include <cstring>

namespace mlpkit::serve {
namespace {

bool is_space(unsigned char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

std::size_t skip_space(const unsigned char* b, std::size_t n, std::size_t i) {
  while (i < n && is_space(b[i])) ++i;
  return i;
}

// The JSON number at b[i] as a float32 in *v; returns the index after it, or 0 when there is
// none or it is refused (see json_rows.h). (0 is never a valid end: a number follows a '[' or ',').
std::size_t read_number(const unsigned char* b, std::size_t n, std::size_t i, float* v) {
  const std::size_t start = i;
  if (i < n && b[i] == '-') ++i;
  if (i >= n) return 0;
  if (b[i] == '0') {
    ++i;
  } else if (b[i] >= '1' && b[i] <= '9') {
    while (i < n && is_digit(b[i])) ++i;
  } else {
    return 0;
  }
  if (i < n && b[i] == '.') {
    const std::size_t fraction = ++i;
    while (i < n && is_digit(b[i])) ++i;
    if (i == fraction) return 0;
  }
  if (i < n && (b[i] == 'e' || b[i] == 'E')) {
    ++i;
    if (i < n && (b[i] == '+' || b[i] == '-')) ++i;
    const std::size_t exponent = i;
    while (i < n && is_digit(b[i])) ++i;
    if (i == exponent) return 0;
  }
  // The grammar is checked above; from_chars only converts (and rounds correctly).
  double d = 0;
  const char* first = reinterpret_cast<const char*>(b + start);
  const char* last = reinterpret_cast<const char*>(b + i);
  const std::from_chars_result r = std::from_chars(first, last, d, std::chars_format::general);
  if (r.ec != std::errc() || r.ptr != last) return 0;
  const double a = std::fabs(d);
  // Past FLT_MAX (JS may still round some of these down to it) and below the normal range
  // (where a flush-to-zero mode would change the rounding) are left to the TypeScript path.
  if (a > FLT_MAX || (a != 0 && a < FLT_MIN)) return 0;
  *v = static_cast<float>(d);
  return i;
}

// One array of `width` numbers at b[i] ('['), appended to out; the index after its ']', or 0.
std::size_t read_row(const unsigned char* b, std::size_t n, std::size_t i, std::size_t width, std::vector<float>& out) {
  if (i >= n || b[i] != '[') return 0;
  i = skip_space(b, n, i + 1);
  const std::size_t at = out.size();
  out.resize(at + width);
  for (std::size_t k = 0;; ++k) {
    if (k == width) return 0;  // a longer row
    i = read_number(b, n, i, &out[at + k]);
    if (i == 0) return 0;
    i = skip_space(b, n, i);
    if (i >= n) return 0;
    if (b[i] == ']') return k + 1 == width ? i + 1 : 0;
    if (b[i] != ',') return 0;
    i = skip_space(b, n, i + 1);
  }
}

constexpr char kInputsKey[] = "\"inputs\"";

bool read_rows(const unsigned char* b, std::size_t n, std::size_t width, std::vector<float>& out, JsonRows& got) {
  std::size_t i = skip_space(b, n, 0);
  if (i >= n || b[i] != '{') return false;
  i = skip_space(b, n, i + 1);
  const std::size_t key = sizeof kInputsKey - 1;
  if (n - i < key || std::memcmp(b + i, kInputsKey, key) != 0) return false;
  i = skip_space(b, n, i + key);
  if (i >= n || b[i] != ':') return false;
  i = skip_space(b, n, i + 1);
  if (i >= n || b[i] != '[') return false;
  const std::size_t outer = i;
  i = skip_space(b, n, i + 1);
  if (i < n && b[i] == '[') {
    got.flat = false;
    for (;;) {
      i = read_row(b, n, i, width, out);
      if (i == 0) return false;
      ++got.rows;
      i = skip_space(b, n, i);
      if (i >= n) return false;
      if (b[i] == ']') break;
      if (b[i] != ',') return false;
      i = skip_space(b, n, i + 1);
    }
    ++i;
  } else {
    got.flat = true;
    got.rows = 1;
    i = read_row(b, n, outer, width, out);
    if (i == 0) return false;
  }
  i = skip_space(b, n, i);
  if (i >= n || b[i] != '}') return false;
  return skip_space(b, n, i + 1) == n;
}

}  // namespace

bool read_json_rows(const unsigned char* b, std::size_t n, std::size_t width, std::vector<float>& out, JsonRows& got) {
  const std::size_t before = out.size();
  got = JsonRows{};
  if (width == 0 || read_rows(b, n, width, out, got)) return width != 0;
  out.resize(before);
  got = JsonRows{};
  return false;
}

}  // namespace mlpkit::serve
