-- Test harness of tests/wireshark.rs: a stand-in for the parts of Wireshark's Lua API the
-- generated plugin uses, strict where Wireshark is (a number field takes an integer in
-- range, a string field a string, a range lies inside its buffer), so that the whole plugin
-- (framing and tree) runs under any plain Lua 5.2-5.4. TCP is played simply: each
-- direction's bytes are handed over chunk by chunk, and what the dissector asks to keep
-- (desegment_offset) is handed over again with the next chunk. Every chunk is dissected a
-- second time as a later pass would (visited), and both passes must agree.
-- Input lines: "conn dir hexbytes". Output: "conn dir cmd label hexline" per command, the
-- label being "service/MSNPn" (or "service/-" before a version is negotiated), read from the
-- msnp.service and msnp.versions fields.
local plugin, input = arg[1], arg[2]

local function fail(msg)
  error(msg, 3)
end

local is_integer = math.type and function(v) return math.type(v) == "integer" end
  or function(v) return type(v) == "number" and v == math.floor(v) end

base = { NONE = 0, ASCII = 1, UNICODE = 2, DEC = 3, HEX = 4 }
expert = {
  group = { UNDECODED = 1, MALFORMED = 2, ASSUMPTION = 3, PROTOCOL = 4, SEQUENCE = 5, RESPONSE_CODE = 6 },
  severity = { NOTE = 1, WARN = 2 },
}
DESEGMENT_ONE_MORE_SEGMENT = 268435455

local fields_by_abbr = {}
local function protofield(kind, bits)
  return function(abbr, name, a, b, mask, desc)
    if type(abbr) ~= "string" or not abbr:find("^[%w_.%-]+$") then
      fail("bad field abbreviation " .. tostring(abbr))
    end
    if fields_by_abbr[abbr] then
      fail("field registered twice: " .. abbr)
    end
    local f = { abbr = abbr, kind = kind, bits = bits, mask = mask }
    fields_by_abbr[abbr] = f
    return f
  end
end
ProtoField = {
  string = protofield("string"),
  bytes = protofield("bytes"),
  bool = protofield("bool"),
  uint8 = protofield("uint", 8),
  uint16 = protofield("uint", 16),
  uint32 = protofield("uint", 32),
  uint64 = protofield("uint", 64),
}
ProtoExpert = {
  new = function(abbr, text, group, severity)
    assert(type(abbr) == "string" and type(group) == "number" and type(severity) == "number")
    return { expert = abbr }
  end,
}
Pref = {
  range = function(label, default, desc, max) return default end,
  bool = function(label, default, desc) return default end,
}

-- Reading a field a Proto does not have is an error in Wireshark too.
local msnp_proto
local heuristics = {}
function Proto(name, desc)
  local p = { name = name, prefs = {} }
  function p.register_heuristic(self, table_name, fn)
    heuristics[#heuristics + 1] = fn
  end
  if name == "msnp" then
    msnp_proto = p
  end
  return setmetatable(p, {
    __index = function(_, k)
      fail("No such '" .. tostring(k) .. "' method/field for object type 'Proto'")
    end,
  })
end

local tables = {}
DissectorTable = {
  get = function(name)
    local t = tables[name] or { entries = {} }
    tables[name] = t
    t.add = function(self, key, p) self.entries[key] = p end
    t.remove = function(self, key) self.entries[key] = nil end
    return t
  end,
}
Dissector = { get = function() return nil end }
local postdissectors = {}
function register_postdissector(p) postdissectors[#postdissectors + 1] = p end
Field = { new = function(name) return function() return nil end end }

-- Buffers and ranges.
local Tvb = {}
Tvb.__index = Tvb
local function new_tvb(bytes, offset)
  return setmetatable({ bytes = bytes, off = offset or 0 }, Tvb)
end
function Tvb:len() return #self.bytes end
function Tvb:offset() return self.off end
function Tvb:raw(o, l)
  if not is_integer(o) or not is_integer(l) or o < 0 or l < 0 or o + l > #self.bytes then
    fail("Tvb:raw out of bounds")
  end
  return self.bytes:sub(o + 1, o + l)
end
Tvb.__call = function(self, o, l)
  if not is_integer(o) or not is_integer(l) or o < 0 or l < 0 or o + l > #self.bytes then
    fail("Range is out of bounds: " .. tostring(o) .. "+" .. tostring(l) .. " of " .. #self.bytes)
  end
  local tvb = self
  return {
    tvb = function() return new_tvb(tvb.bytes:sub(o + 1, o + l)) end,
  }
end

-- Tree items: record field values; check their types.
local seen = {}
local Item = {}
Item.__index = Item
local function new_item() return setmetatable({}, Item) end
function Item:add(what, range, value)
  if type(what) == "table" and rawget(what, "abbr") ~= nil then
    local f = what
    if type(range) ~= "table" or range.tvb == nil then
      fail("TreeItem:add(" .. f.abbr .. "): no range")
    end
    if value ~= nil then
      if f.kind == "uint" then
        if not is_integer(value) or value < 0 or value >= 2 ^ f.bits then
          fail(f.abbr .. ": not a " .. f.bits .. "-bit unsigned integer: " .. tostring(value))
        end
      elseif f.kind == "string" and type(value) ~= "string" then
        fail(f.abbr .. ": not a string: " .. tostring(value))
      elseif f.kind == "bool" and type(value) ~= "boolean" and not is_integer(value) then
        fail(f.abbr .. ": not a boolean or integer: " .. tostring(value))
      end
    end
    seen[#seen + 1] = { f.abbr, value }
  elseif type(what) == "table" and rawget(what, "prefs") ~= nil then
    -- A protocol item: (proto, range, label).
    if type(range) ~= "table" or range.tvb == nil then
      fail("TreeItem:add(proto): no range")
    end
  elseif type(what) == "table" and rawget(what, "tvb") ~= nil then
    -- A text item: (range, label).
    if type(range) ~= "string" then
      fail("TreeItem:add(range, label): label is not a string")
    end
  else
    fail("TreeItem:add: unexpected arguments")
  end
  return new_item()
end
-- Little-endian items are checked as the others.
Item.add_le = Item.add
function Item:append_text(t)
  if type(t) ~= "string" then fail("append_text: not a string") end
  return self
end
function Item:set_generated() return self end
function Item:set_hidden() return self end
function Item:add_proto_expert_info(e, text)
  if type(e) ~= "table" or e.expert == nil or type(text) ~= "string" then
    fail("add_proto_expert_info: bad arguments")
  end
  return self
end

local function column()
  local c = { text = "" }
  return setmetatable(c, {
    __index = {
      set = function(self, t) self.text = t end,
      append = function(self, t) self.text = self.text .. t end,
    },
    __tostring = function(self) return self.text end,
  })
end

local Address = {}
Address.__tostring = function(self) return self.ip end

local core_or_nil = dofile(plugin)
assert(core_or_nil == nil, "inside Wireshark the plugin must not return early")
assert(msnp_proto ~= nil and rawget(msnp_proto, "dissector") ~= nil, "no msnp dissector registered")
assert(#heuristics == 1, "no heuristic registered")
assert(tables["tcp.port"].entries[1863] == msnp_proto, "not registered on tcp.port 1863")
assert(tables["media_type"].entries["application/x-msn-messenger"] == msnp_proto, "no gateway registration")
if rawget(msnp_proto, "prefs_changed") then
  msnp_proto.prefs_changed()
end
if rawget(msnp_proto, "init") then
  msnp_proto.init()
end

local function unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end
local function tohex(s)
  return (s:gsub(".", function(ch) return string.format("%02x", ch:byte()) end))
end

local frame_no = 0
local bufs = {}
local out = {}

-- One dissector call as TCP makes it; returns the recorded (dir, cmd, line) triples.
local function call(conn, dir, bytes, number, visited, tvb_offset)
  local client = { ip = "10.0.0.1" }
  local server = { ip = "10.0.0.2" }
  setmetatable(client, Address)
  setmetatable(server, Address)
  local cport = 5000 + tonumber(conn)
  local pinfo = {
    number = number,
    visited = visited,
    can_desegment = 1,
    cols = { info = column(), protocol = "TCP" },
  }
  if dir == "c2s" then
    pinfo.src, pinfo.src_port, pinfo.dst, pinfo.dst_port = client, cport, server, 1863
  else
    pinfo.src, pinfo.src_port, pinfo.dst, pinfo.dst_port = server, 1863, client, cport
  end
  seen = {}
  local tvb = new_tvb(bytes, tvb_offset)
  local used = msnp_proto.dissector(tvb, pinfo, new_item())
  if not is_integer(used) then
    fail("dissector returned a non-integer")
  end
  -- Each command's items start with its direction.
  local cmds = {}
  for _, s in ipairs(seen) do
    if s[1] == "msnp.dir" then
      if s[2] ~= dir then
        fail("direction " .. tostring(s[2]) .. " for a " .. dir .. " chunk")
      end
      cmds[#cmds + 1] = {}
    elseif s[1] == "msnp.cmd" then
      cmds[#cmds].cmd = s[2]
    elseif s[1] == "msnp.line" then
      cmds[#cmds].line = s[2]
    elseif s[1] == "msnp.service" then
      cmds[#cmds].service = s[2]
    elseif s[1] == "msnp.versions" then
      -- A range (MSNP8-21) until a version is negotiated.
      cmds[#cmds].version = s[2]:find("-", 1, true) and "-" or s[2]
    end
  end
  return cmds, pinfo.desegment_offset, pinfo.desegment_len
end

local calls = {}
for l in io.lines(input) do
  local conn, dir, h = l:match("^(%S+) (%S+) (%x*)$")
  assert(conn ~= nil, "bad input line: " .. l)
  local key = conn .. " " .. dir
  local pending = bufs[key] or ""
  frame_no = frame_no + 1
  local bytes = pending .. unhex(h)
  -- Reassembled bytes start a buffer of their own (offset 0); a fresh segment sits after
  -- its headers.
  local tvb_offset = (#pending > 0) and 0 or 54
  local cmds, doff, dlen = call(conn, dir, bytes, frame_no, false, tvb_offset)
  calls[#calls + 1] = { conn, dir, bytes, frame_no, tvb_offset, cmds, doff }
  for _, x in ipairs(cmds) do
    out[#out + 1] = conn .. " " .. dir .. " " .. x.cmd .. " " .. x.service .. "/" .. x.version .. " " .. tohex(x.line)
  end
  if doff ~= nil then
    if not is_integer(doff) or doff < 0 or doff >= #bytes then
      fail("desegment_offset " .. tostring(doff) .. " outside the " .. #bytes .. " bytes")
    end
    bufs[key] = bytes:sub(doff + 1)
  else
    bufs[key] = nil
  end
end
-- A later pass: every call again, visited, from the snapshots; the same commands.
for _, c in ipairs(calls) do
  local cmds = call(c[1], c[2], c[3], c[4], true, c[5])
  if #cmds ~= #c[6] then
    fail("frame " .. c[4] .. ": " .. #c[6] .. " commands on the first pass, " .. #cmds .. " later")
  end
  for i, x in ipairs(cmds) do
    if x.line ~= c[6][i].line or x.cmd ~= c[6][i].cmd or x.service ~= c[6][i].service
      or x.version ~= c[6][i].version then
      fail("frame " .. c[4] .. ": another command on a later pass")
    end
  end
end
for _, l in ipairs(out) do
  io.write(l, "\n")
end
