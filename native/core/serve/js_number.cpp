#include "core/serve/js_number.h"

#include <charconv>
#include <cstring>

namespace mlpkit::serve {

char* write_js_number(char* out, double v) {
  if (v == 0) {  // +0 and -0 alike
    *out++ = '0';
    return out;
  }
  // The shortest round-trip digits (both V8 and std::to_chars pick, among the shortest, the
  // digits closest to v); only the layout around them differs, and ECMA-262's
  // Number::toString rules give that below.
  char sci[40];
  const std::to_chars_result r = std::to_chars(sci, sci + sizeof sci, v, std::chars_format::scientific);
  const char* p = sci;
  if (*p == '-') {
    *out++ = '-';
    ++p;
  }
  char digits[20];
  int k = 0;
  for (; *p != 'e'; ++p) {
    if (*p != '.') digits[k++] = *p;
  }
  ++p;
  const bool negative_exponent = *p == '-';
  ++p;
  int e = 0;
  for (; p < r.ptr; ++p) e = e * 10 + (*p - '0');
  if (negative_exponent) e = -e;
  const int n = e + 1;  // v = 0.digits x 10^n
  if (k <= n && n <= 21) {
    std::memcpy(out, digits, k);
    out += k;
    for (int i = k; i < n; ++i) *out++ = '0';
  } else if (0 < n && n <= 21) {
    std::memcpy(out, digits, n);
    out += n;
    *out++ = '.';
    std::memcpy(out, digits + n, k - n);
    out += k - n;
  } else if (-6 < n && n <= 0) {
    *out++ = '0';
    *out++ = '.';
    for (int i = n; i < 0; ++i) *out++ = '0';
    std::memcpy(out, digits, k);
    out += k;
  } else {
    *out++ = digits[0];
    if (k > 1) {
      *out++ = '.';
      std::memcpy(out, digits + 1, k - 1);
      out += k - 1;
    }
    *out++ = 'e';
    *out++ = e < 0 ? '-' : '+';
    const int a = e < 0 ? -e : e;
    if (a >= 100) *out++ = static_cast<char>('0' + a / 100);
    if (a >= 10) *out++ = static_cast<char>('0' + a / 10 % 10);
    *out++ = static_cast<char>('0' + a % 10);
  }
  return out;
}

}  // namespace mlpkit::serve
