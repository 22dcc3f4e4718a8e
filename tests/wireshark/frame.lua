-- Test harness of tests/wireshark.rs: runs the framing part of a generated Wireshark plugin
-- under a plain Lua interpreter, fed the way `msntap decode` feeds a session. It must not
-- touch any Wireshark API (the plugin returns its framing core when Proto is absent).
-- Input lines: "conn dir hexbytes". Output: "conn dir cmd label hexline" per command, the
-- label being "service/MSNPn" (or "service/-" before a version is negotiated).
local plugin, input = arg[1], arg[2]
local core = dofile(plugin)
assert(type(core) == "table" and core.frame ~= nil, "the plugin did not return its framing core outside Wireshark")

local function unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

local function tohex(s)
  return (s:gsub(".", function(ch) return string.format("%02x", ch:byte()) end))
end

local conns, order = {}, {}

local function feed(id, dir, eof)
  local c = conns[id]
  local function on_pdu(p)
    local v = p.version and ("MSNP" .. p.version) or "-"
    io.write(id, " ", dir, " ", p.name, " ", p.service, "/", v, " ", tohex(p.line), "\n")
  end
  local function on_skip() end
  local stop = core.frame(c.st, dir, c.buf[dir], eof, on_pdu, on_skip)
  if stop ~= nil then
    c.buf[dir] = c.buf[dir]:sub(stop)
  else
    c.buf[dir] = ""
  end
end

for l in io.lines(input) do
  local id, dir, h = l:match("^(%S+) (%S+) (%x*)$")
  assert(id ~= nil, "bad input line: " .. l)
  local c = conns[id]
  if c == nil then
    c = { st = core.new_state(nil, nil), buf = { c2s = "", s2c = "" } }
    conns[id] = c
    order[#order + 1] = id
  end
  c.buf[dir] = c.buf[dir] .. unhex(h)
  feed(id, dir, false)
end
-- The end of a log: what is buffered is framed as far as it goes, client side first.
for _, id in ipairs(order) do
  feed(id, "c2s", true)
  feed(id, "s2c", true)
end
