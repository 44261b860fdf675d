-- wrk script: every request a unique OneRoute event, signed with HMAC-SHA512 via
-- OpenSSL's libcrypto (wrk links it; LuaJIT's FFI calls it). Driven by bench/ingest.py:
--   BENCH_TEMPLATE  the body template (see parse_template)
--   BENCH_SECRET    the HMAC key
--   BENCH_PREFIX    makes ids unique across runs against the same store
--   BENCH_PATH      the endpoint
-- done() prints one JSON line prefixed with "BENCH_RESULT ".
local ffi = require("ffi")
ffi.cdef [[
const void *EVP_sha512(void);
unsigned char *HMAC(const void *evp_md, const void *key, int key_len,
                    const unsigned char *d, size_t n, unsigned char *md, unsigned int *md_len);
]]
local ok, crypto = pcall(ffi.load, "crypto")
if not ok then crypto = ffi.load("libcrypto.so.3") end

local function read_all(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- The template file (written by bench/ingest.py): line 1 the order of the values ("n" the
-- unique id, "c" the conversation), line 2 the number of conversations, then the literal
-- parts separated by \1 (compact JSON has neither \1 nor newlines).
local function parse_template(text)
  local order_text, conversations, rest = text:match("^(%a+)\n(%d+)\n(.*)$")
  local order, parts = {}, {}
  for letter in order_text:gmatch("%a") do order[#order + 1] = letter end
  for part in (rest .. "\1"):gmatch("([^\1]*)\1") do parts[#parts + 1] = part end
  return parts, order, tonumber(conversations)
end

local parts, order, conversations = parse_template(read_all(os.getenv("BENCH_TEMPLATE")))
local secret = os.getenv("BENCH_SECRET")
local prefix = os.getenv("BENCH_PREFIX") or tostring(os.time())
local path = os.getenv("BENCH_PATH") or "/webhooks/oneroute"
local md = ffi.new("unsigned char[64]")
local md_len = ffi.new("unsigned int[1]")
local sha512 = crypto.EVP_sha512()

local function hex(buffer, length)
  local out = {}
  for i = 0, length - 1 do out[#out + 1] = string.format("%02x", buffer[i]) end
  return table.concat(out)
end

local function sign(body)
  crypto.HMAC(sha512, secret, #secret, body, #body, md, md_len)
  return hex(md, md_len[0])
end

local threads = {}
function setup(thread)
  thread:set("id", #threads + 1)
  threads[#threads + 1] = thread
end

local counter = 0
function request()
  counter = counter + 1
  local values = {
    n = string.format("%s-%d-%d", prefix, id, counter),
    c = string.format("0b5e8a52-0000-4000-8000-%012d", counter % conversations),
  }
  local out = { parts[1] }
  for i, letter in ipairs(order) do
    out[#out + 1] = values[letter]
    out[#out + 1] = parts[i + 1]
  end
  local body = table.concat(out)
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/json",
    ["x-oneroute-signature"] = sign(body),
  }, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "errors": {"connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d}, "latency_us": {"p50": %d, "p90": %d, ' ..
    '"p99": %d, "p99.9": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
