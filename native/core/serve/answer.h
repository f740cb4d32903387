// The 200 answer to a predict request as the TypeScript direct path writes it
// (lib/server/direct-http.ts and codec.ts): the same status line, headers in the same order,
// the same JSON, byte for byte, so a client cannot tell which path answered.
#pragma once

#include <cstddef>
#include <ctime>
#include <string>

namespace mlpkit::serve {

// The Date header's value for `seconds` since the epoch, as JS's Date.prototype.toUTCString
// (and node:http) write it: "Mon, 07 Dec 2026 01:50:40 GMT".
std::string http_date(std::time_t seconds);

// Appends to `out` the answer for rows x width outputs y: {"outputs":[[...],...]}, or for a flat
// request {"outputs":[...],"shape":[rows,width]}, each value as JS's String(v) writes it (a
// non-finite one as null). `date` is http_date's text; `tail` ends the head (the Connection and
// Keep-Alive fields and the blank line).
void append_json_answer(std::string& out, const float* y, std::size_t rows, std::size_t width, bool flat,
                        const std::string& date, const std::string& tail);

// Appends the 503 of a request refused for a full queue: `body` (the TypeScript path's JSON
// error) with Retry-After `retry_after`.
void append_overloaded_answer(std::string& out, const std::string& body, const std::string& retry_after, const std::string& date,
                              const std::string& tail);

}  // namespace mlpkit::serve
