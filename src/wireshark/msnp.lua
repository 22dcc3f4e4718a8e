-- ---------------------------------------------------------------------------------------
-- The fixed part of the plugin (src/wireshark/msnp.lua in msntap): framing, state tracking
-- and the protocol tree. The tables above it (GEN) are generated from msntap's dissector
-- tables. It must stay within Lua 5.2-5.4 (no bitwise operators, no integer division, no
-- math.tointeger) and the Wireshark 4.0 Lua API (no Conversation objects, no ENC_STR_DEC).
-- ---------------------------------------------------------------------------------------

-- msntap's default bounds (wire::Limits, generated): they decide when a line or payload is
-- refused, so the dissector frames hostile input exactly as msntap does.
local MAX_LINE = GEN.limits.max_line
local MAX_PAYLOAD = GEN.limits.max_payload
local MAX_GUESS = GEN.limits.max_guess
-- How far into a connection not on an MSNP port msntap looks for a first command line.
local DETECT_WINDOW = GEN.detect_window
-- Hand-written copies of literals of msntap's capture reader (capture/flow.rs): how much a
-- first command line may hold, the longest line skipped while looking for one, and how many
-- referral addresses are remembered.
local FIRST_LINE_WINDOW = 2048
local MAX_SEEK_LINE = 4096
local MAX_LEARNED = 4096

local core = {}

local function is_known(name)
  return GEN.commands[name] ~= nil
end

local function any_name()
  return true
end

local function is_digit(c)
  return c ~= nil and c >= 48 and c <= 57
end

local function is_upper(c)
  return c ~= nil and c >= 65 and c <= 90
end

-- A line (without its line ending) that starts with a command token: three capitals or
-- three digits, then a space or the end of the line.
local function is_command_line(line)
  if #line < 3 then
    return false
  end
  local a, b, c = line:byte(1, 3)
  local name_ok = (is_upper(a) and is_upper(b) and is_upper(c))
    or (is_digit(a) and is_digit(b) and is_digit(c))
  return name_ok and (#line == 3 or line:byte(4) == 32)
end
core.is_command_line = is_command_line

-- Does s, from index i on, look like the start of a command line? nil: more bytes needed.
local function looks_like_line_start(s, i, eof, known)
  local avail = #s - i + 1
  if avail < 0 then
    avail = 0
  end
  local digits = is_digit(s:byte(i))
  local n = avail
  if n > 3 then
    n = 3
  end
  for k = 0, n - 1 do
    local c = s:byte(i + k)
    local ok
    if digits then
      ok = is_digit(c)
    else
      ok = is_upper(c)
    end
    if not ok then
      return false
    end
  end
  if avail < 4 then
    if not eof then
      return nil
    end
    return avail == 3 and (digits or known(s:sub(i, i + 2)))
  end
  local sep = s:byte(i + 3)
  return (sep == 32 or sep == 13 or sep == 10) and (digits or known(s:sub(i, i + 2))) or false
end
core.looks_like_line_start = looks_like_line_start

-- An unsigned decimal token of at most 20 digits (what msntap accepts as a length).
local function parse_len(tok)
  if tok == nil or #tok == 0 or #tok > 20 or tok:find("[^0-9]") then
    return nil
  end
  return tonumber(tok)
end
core.parse_len = parse_len

-- A number that fits a 32-bit field, else nil.
local function u32(tok)
  local v = parse_len(tok)
  if v ~= nil and #tok <= 10 and v <= 4294967295 then
    return v
  end
  return nil
end

-- `MSNP11` -> 11 (protocol/dialect.rs dialect_number: any length number that fits a byte).
local function dialect_number(t)
  if t:sub(1, 4) ~= "MSNP" then
    return nil
  end
  local v = parse_len(t:sub(5))
  if v == nil or v > 255 then
    return nil
  end
  return v
end

local function urldecode(s)
  if not s:find("%", 1, true) then
    return s
  end
  return (s:gsub("%%(%x%x)", function(h)
    return string.char(tonumber(h, 16))
  end))
end
core.urldecode = urldecode

-- Per-connection decoder state: what msntap's Session tracks besides its buffers.
local function new_state(service, version)
  local st = {
    service = service or "unknown",
    hinted = service ~= nil and service ~= "unknown",
    version = nil,
    lo = GEN.versions.lo,
    hi = GEN.versions.hi,
    logged_in = false,
    resync = {},
  }
  if version ~= nil and version >= GEN.versions.lo and version <= GEN.versions.hi then
    st.version = version
    st.lo = version
    st.hi = version
  end
  return st
end
core.new_state = new_state

local function copy_state(st)
  local c = {}
  for k, v in pairs(st) do
    c[k] = v
  end
  c.resync = {}
  for d, r in pairs(st.resync) do
    c.resync[d] = { at_line_start = r.at_line_start, reason = r.reason }
  end
  if st.seek ~= nil then
    c.seek = { c2s = st.seek.c2s, s2c = st.seek.s2c }
    c.anywhere = { c2s = st.anywhere.c2s, s2c = st.anywhere.s2c }
  end
  return c
end
core.copy_state = copy_state

local function versions(st)
  if st.version ~= nil then
    return st.version, st.version
  end
  return st.lo, st.hi
end

local function form_fits(f, dir, service, lo, hi, args)
  if f.dir ~= "both" and f.dir ~= dir then
    return false
  end
  if service ~= "unknown" and not f.services[service]
    and not (service == "DS" and f.services.NS) then
    return false
  end
  if not (f.lo <= hi and lo <= f.hi) then
    return false
  end
  local n = #args
  if n < f.min or (n > f.max and not f.rep) then
    return false
  end
  for idx, lits in pairs(f.match) do
    local a = args[idx]
    if a == nil or not lits[a] then
      return false
    end
  end
  return true
end

-- The table entry of a command and the first form the line fits (errors have neither).
local function lookup(st, dir, name, args)
  if is_digit(name:byte(1)) then
    return nil, nil
  end
  local def = GEN.commands[name]
  if def == nil then
    return nil, nil
  end
  local lo, hi = versions(st)
  for _, f in ipairs(def.forms) do
    if form_fits(f, dir, st.service, lo, hi, args) then
      return def, f
    end
  end
  return def, nil
end
core.lookup = lookup

local NO_PAYLOAD = {}

-- Whether a payload follows the line at s[after]: NO_PAYLOAD, { n = len, guess = bool },
-- { oversize = len }, or nil when more bytes are needed to tell; second value true when
-- the bytes after the line decided.
local function plan_payload(st, dir, name, def, form, args, s, after, eof)
  local n = #args
  local len
  if is_digit(name:byte(1)) then
    -- Errors carry a payload only from MSNP13 on, as `NNN trid len`.
    if st.hi >= GEN.error_payload_from and n == 2 then
      len = parse_len(args[2])
    end
  elseif def ~= nil then
    if form ~= nil then
      if form.payload then
        len = parse_len(args[n])
      end
    elseif def.payload[dir] then
      -- No form fits: what the command can do in this direction decides.
      len = parse_len(args[n])
    end
  else
    -- Unknown command: a numeric last token is a length only if no command line follows.
    local g = parse_len(args[n])
    if g ~= nil and g > 0 and g <= MAX_GUESS then
      local l = looks_like_line_start(s, after, eof, any_name)
      if l == nil then
        return nil
      end
      if l then
        return NO_PAYLOAD, true
      end
      if eof and after > #s then
        return NO_PAYLOAD, true
      end
      return { n = g, guess = true }, true
    end
  end
  if len == nil then
    return NO_PAYLOAD
  end
  if len > MAX_PAYLOAD then
    return { oversize = len }
  end
  return { n = len, guess = false }
end
core.plan_payload = plan_payload

local function narrow(st, lo, hi)
  local a = st.lo
  if lo > a then
    a = lo
  end
  local b = st.hi
  if hi < b then
    b = hi
  end
  if a <= b then
    st.lo = a
    st.hi = b
  end
end

-- The dialect rules by command, in table order (a rule naming a command twice is listed
-- twice, as protocol/tables.rs indexes it).
local RULES = {}
for _, r in ipairs(GEN.rules) do
  for _, c in ipairs(r.cmd) do
    if #c == 3 then
      local l = RULES[c] or {}
      l[#l + 1] = r
      RULES[c] = l
    end
  end
end

local function rule_applies(r, dir, args)
  if r.dir ~= "both" and r.dir ~= dir then
    return false
  end
  local n = #args
  if (r.argc ~= nil and n ~= r.argc) or (r.min_args ~= nil and n < r.min_args) then
    return false
  end
  for idx, lits in pairs(r.match) do
    if args[idx] == nil or not lits[args[idx]] then
      return false
    end
  end
  for idx, lits in pairs(r.not_match) do
    if args[idx] ~= nil and lits[args[idx]] then
      return false
    end
  end
  return true
end

-- Version and service tracking from what a command says: every rule of GEN.rules that
-- fits applies, in order, as protocol/dialect.rs applies them (its action, then the
-- versions while none is negotiated, then the service while it is unknown).
local function update_state(st, dir, name, args)
  local rules = RULES[name]
  if rules == nil then
    return
  end
  for _, r in ipairs(rules) do
    if rule_applies(r, dir, args) then
      if r.action == "offer" then
        local lo, hi
        for _, t in ipairs(args) do
          local v = dialect_number(t)
          if v ~= nil then
            if lo == nil or v < lo then
              lo = v
            end
            if hi == nil or v > hi then
              hi = v
            end
          end
        end
        if st.version == nil and lo ~= nil then
          st.lo = lo
          st.hi = hi
        end
      elseif r.action == "negotiate" then
        local best
        for _, t in ipairs(args) do
          local v = dialect_number(t)
          if v ~= nil and v >= GEN.versions.lo and v <= GEN.versions.hi and (best == nil or v > best) then
            best = v
          end
        end
        if best ~= nil then
          st.version = best
          st.lo = best
          st.hi = best
        end
      elseif r.action == "logged_in" then
        st.logged_in = true
      elseif r.action == "dispatch" then
        if not st.logged_in and not st.hinted then
          st.service = "DS"
        end
      end
      if r.lo ~= nil and st.version == nil then
        narrow(st, r.lo, r.hi)
      end
      if r.service ~= nil and st.service == "unknown" then
        st.service = r.service
      end
    end
  end
end
core.update_state = update_state

local function looks_like_address(s)
  local h, p = s:match("^(.+):([0-9]+)$")
  if h == nil then
    return false
  end
  local v = parse_len(p)
  return v ~= nil and v <= 65535
end

-- The definition of argument i of a form, honouring repeat_last.
local function param_of(form, i)
  local p = form.params[i]
  if p == nil and form.rep then
    p = form.params[#form.params]
  end
  return p
end

-- Argument indices holding server addresses: the form's address params, or for a line that
-- fits no form, address-looking arguments where a form of this direction has one.
local function address_args(def, form, dir, args)
  local out = {}
  if def == nil then
    return out
  end
  if form ~= nil then
    for i = 1, #args do
      local p = param_of(form, i)
      if p == nil then
        break
      end
      if p.ty == "address" then
        out[#out + 1] = i
      end
    end
    return out
  end
  local seen = {}
  for _, f in ipairs(def.forms) do
    local ok = f.dir == "both" or f.dir == dir
    if ok then
      for idx, lits in pairs(f.match) do
        if args[idx] == nil or not lits[args[idx]] then
          ok = false
        end
      end
    end
    if ok then
      for i = 1, #args do
        local p = param_of(f, i)
        if p ~= nil and p.ty == "address" and looks_like_address(args[i]) and not seen[i] then
          seen[i] = true
          out[#out + 1] = i
        end
      end
    end
  end
  return out
end

-- The server a command refers the client to: address, and NS or SB (protocol/redirect.rs:
-- RNG, or `SB` as the token after the transaction id).
local function referral(name, args, addrs)
  local i = addrs[1]
  if i == nil or args[i] == nil or args[i] == "0" then
    return nil
  end
  local target = "NS"
  if name == "RNG" or args[2] == "SB" then
    target = "SB"
  end
  return args[i], target
end

-- Splits a command line into its name and arguments, with each token's index in the line.
local function tokens(line)
  local toks, pos = {}, {}
  for p, t in line:gmatch("()([^ ]+)") do
    toks[#toks + 1] = t
    pos[#pos + 1] = p
  end
  local name = table.remove(toks, 1)
  table.remove(pos, 1)
  return name, toks, pos
end
core.tokens = tokens

-- msntap's test for the first line of a direction: a known command, a space or CR,
-- printable, CRLF, and not an HTTP request line. nil: too short to tell.
local function plausible_line(s)
  if #s < 4 then
    for k = 1, #s do
      if not is_upper(s:byte(k)) then
        return false
      end
    end
    return nil
  end
  local a, b, c, d = s:byte(1, 4)
  if not (is_upper(a) and is_upper(b) and is_upper(c)) or not (d == 32 or d == 13)
    or not is_known(s:sub(1, 3)) then
    return false
  end
  local window = s:sub(1, FIRST_LINE_WINDOW)
  local lf = window:find("\n", 1, true)
  if lf == nil then
    if #window == FIRST_LINE_WINDOW then
      return false
    end
    if window:find("[^\r\32-\126]") then
      return false
    end
    return nil
  end
  local line = window:sub(1, lf - 2)
  return lf >= 5 and window:byte(lf - 1) == 13 and not line:find("[^\32-\126]")
    and not line:find(" HTTP/", 1, true)
end
core.plausible_line = plausible_line

-- Where the first command line of a direction starts, from index pos: "at", i; "more", i
-- (not yet: bytes before i can go); or "no". Only at pos itself unless `anywhere` (a
-- stream picked up mid-way, or known MSNP whose first bytes are no command line).
local function find_start(s, pos, anywhere)
  local cand = pos
  while true do
    local ok = plausible_line(s:sub(cand, cand + FIRST_LINE_WINDOW - 1))
    if ok then
      return "at", cand
    elseif ok == nil then
      return "more", cand
    elseif not anywhere then
      return "no", cand
    end
    local lf = s:find("\n", cand, true)
    if lf == nil then
      return "more", #s + 1
    end
    cand = lf + 1
  end
end
core.find_start = find_start

-- Frames the bytes s of one direction as msntap does. Calls on_pdu(p) for each command
-- and on_skip(from, to, reason, midway) for bytes that are not MSNP. Returns nil when
-- everything was used, or the index where framing stopped and how many more bytes are
-- needed there (0: at least one more segment); or nil, nil, true when a connection taken
-- on trial (st.tentative) turns out not to start with a command line.
-- memo (optional) keeps what was decided by looking at bytes after a command: a later
-- pass gets a reassembled command without the bytes after it, and must decide alike.
local function frame(st, dir, s, eof, on_pdu, on_skip, memo)
  memo = memo or {}
  -- looks_like_line_start at i, remembered where the bytes told.
  local function line_start_at(i)
    local l = looks_like_line_start(s, i, eof, is_known)
    if l == nil then
      l = memo["r" .. i]
    else
      memo["r" .. i] = l
    end
    return l
  end
  local pos = 1
  -- A direction of a TCP connection starts at its first plausible command line.
  while st.seek ~= nil and st.seek[dir] do
    local r, cand = find_start(s, pos, st.anywhere[dir])
    if r == "at" then
      if cand > pos then
        on_skip(pos, cand - 1, "stream picked up mid-way: skipped to the first command line", true)
      end
      pos = cand
      st.seek[dir] = false
      st.tentative = nil
    elseif r == "no" and st.tentative then
      -- Taken on the promise of its first bytes, and they are no command line after all.
      return nil, nil, true
    elseif r == "more" then
      if cand > pos then
        on_skip(pos, cand - 1, "before the first command line", true)
      end
      if cand > #s then
        return nil
      end
      if #s - cand + 1 > MAX_SEEK_LINE then
        -- A line longer than any command: skip it.
        on_skip(cand, #s, "before the first command line", true)
        return nil
      end
      return cand, 0
    else
      st.anywhere[dir] = true
    end
  end
  local function start_resync(reason)
    if st.resync[dir] == nil then
      st.resync[dir] = { at_line_start = false, reason = reason }
    end
  end
  while true do
    local rs = st.resync[dir]
    if rs ~= nil then
      local done = false
      if rs.at_line_start then
        local l = line_start_at(pos)
        if l == nil then
          return pos, 0
        elseif l then
          st.resync[dir] = nil
          done = true
        else
          rs.at_line_start = false
        end
      end
      if not done then
        -- Skip to the next line that starts with a known command or an error code.
        local lf = s:find("\n", pos, true)
        if lf == nil then
          if pos <= #s then
            on_skip(pos, #s, rs.reason)
          end
          return nil
        end
        local cand = lf + 1
        local l = line_start_at(cand)
        on_skip(pos, lf, rs.reason)
        if l == nil then
          rs.at_line_start = true
          return cand, 0
        elseif l then
          st.resync[dir] = nil
          pos = cand
        else
          pos = cand
          if pos > #s then
            return nil
          end
        end
      end
    else
      if pos > #s then
        return nil
      end
      local lf = s:find("\n", pos, true)
      if lf ~= nil and lf - pos >= MAX_LINE + 2 then
        lf = nil
      end
      -- The line without its ending, and the index of the byte after the ending.
      local line, after
      if lf ~= nil then
        local line_end = lf
        if lf > pos and s:byte(lf - 1) == 13 then
          line_end = lf - 1
        end
        line = s:sub(pos, line_end - 1)
        after = lf + 1
      elseif #s - pos + 1 > MAX_LINE then
        start_resync(GEN.reasons.line_too_long)
      elseif not eof then
        return pos, 0
      else
        -- A line ended by the stream's end is still a command line (wire/framer.rs).
        local rest = s:sub(pos)
        if rest:byte(-1) == 13 then
          rest = rest:sub(1, -2)
        end
        if is_command_line(rest) then
          line = rest
          after = #s + 1
        else
          start_resync(GEN.reasons.incomplete_line)
        end
      end
      if line ~= nil then
        if #line > MAX_LINE then
          start_resync(GEN.reasons.line_too_long)
        elseif not is_command_line(line) then
          if line == "" then
            start_resync(GEN.reasons.empty_line)
          else
            start_resync(GEN.reasons.not_a_command_line)
          end
        else
          local name, args, tpos = tokens(line)
          local def, form = lookup(st, dir, name, args)
          local plan, looked = plan_payload(st, dir, name, def, form, args, s, after, eof)
          if plan == nil then
            plan = memo["p" .. pos]
            if plan == nil then
              return pos, 0
            end
          elseif looked then
            memo["p" .. pos] = plan
          end
          local p = {
            start = pos, line = line, line_len = #line, head_len = after - pos,
            name = name, args = args, tpos = tpos, def = def, form = form,
          }
          p.frame_len = p.head_len
          if plan.n ~= nil then
            local have = #s - after + 1
            p.payload_len = plan.n
            p.guess = plan.guess
            if have < plan.n then
              if not eof then
                return pos, p.head_len + plan.n - (#s - pos + 1)
              end
              p.truncated = have
              p.frame_len = #s - pos + 1
            else
              p.frame_len = p.head_len + plan.n
            end
          elseif plan.oversize ~= nil then
            p.oversize = plan.oversize
          end
          -- Payloads are decoded with the version the command was framed with (session.rs).
          p.frame_version = st.version
          update_state(st, dir, name, args)
          p.service = st.service
          p.version = st.version
          p.lo, p.hi = st.lo, st.hi
          if dir == "s2c" then
            p.referral, p.referral_target = referral(name, args, address_args(def, form, dir, args))
          end
          on_pdu(p)
          pos = pos + p.frame_len
          if p.oversize ~= nil then
            start_resync(GEN.reasons.oversize_payload)
            -- A bogus length is usually followed at once by the next command.
            st.resync[dir].at_line_start = true
          end
        end
      end
    end
  end
end
core.frame = frame


-- Outside Wireshark (tests running the framing under a plain Lua), stop here.
if Proto == nil then
  return core
end

-- ---------------------------------------------------------------------------------------
-- Wireshark glue
-- ---------------------------------------------------------------------------------------

local msnp = Proto("msnp", "MSN Messenger Protocol")
local F = {}
local function field(key, f)
  F[key] = f
end

field("cmd", ProtoField.string("msnp.cmd", "Command", base.ASCII, "Three-letter command or three-digit error code"))
field("trid", ProtoField.uint32("msnp.trid", "Transaction ID", base.DEC))
field("args", ProtoField.string("msnp.args", "Arguments", base.ASCII))
field("line", ProtoField.string("msnp.line", "Command line", base.ASCII))
field("dir", ProtoField.string("msnp.dir", "Direction", base.ASCII, "c2s (>>>) or s2c (<<<)"))
field("version", ProtoField.uint8("msnp.version", "Negotiated version", base.DEC, nil, nil, "MSNP dialect from the VER exchange"))
field("versions", ProtoField.string("msnp.versions", "Possible versions", base.ASCII,
  "The dialects the forms are chosen from: MSNPlo-hi before VER settles it, then the negotiated one (MSNP11)"))
field("service", ProtoField.string("msnp.service", "Service", base.ASCII, "DS (dispatch), NS (notification), SB (switchboard) or unknown"))
field("meaning", ProtoField.string("msnp.meaning", "Meaning", base.ASCII))
field("payload_len", ProtoField.uint32("msnp.payload.length", "Payload length", base.DEC))
field("payload", ProtoField.bytes("msnp.payload", "Payload"))
field("payload_text", ProtoField.string("msnp.payload.text", "Payload text"))
field("known", ProtoField.bool("msnp.known", "Known command"))
field("error", ProtoField.uint16("msnp.error", "Error code", base.DEC, GEN.error_names))
field("error_meaning", ProtoField.string("msnp.error.meaning", "Error meaning"))
field("host", ProtoField.string("msnp.server.host", "Server host", base.ASCII, "Host of an address argument (XFR, RNG)"))
field("port", ProtoField.uint16("msnp.server.port", "Server port", base.DEC, nil, nil, "Port of an address argument (XFR, RNG)"))
field("client", ProtoField.string("msnp.client", "Client", base.ASCII, "The connection's client side (address:port)"))
field("server", ProtoField.string("msnp.server", "Server", base.ASCII, "The connection's server side (address:port)"))
field("referral", ProtoField.string("msnp.referral", "Referral", base.ASCII, "Server address a later connection is expected on"))
field("mime_header", ProtoField.string("msnp.mime.header", "MIME header"))
field("mime_name", ProtoField.string("msnp.mime.header.name", "Name"))
field("mime_value", ProtoField.string("msnp.mime.header.value", "Value"))
field("content_type", ProtoField.string("msnp.mime.content_type", "Content-Type"))
field("mime_body", ProtoField.string("msnp.mime.body", "Body"))
field("caps", ProtoField.uint32("msnp.caps", "Capabilities", base.HEX))
field("caps_client", ProtoField.uint32("msnp.caps.client", "Client version", base.DEC, GEN.client_versions,
  GEN.client_version_mask, "The client-version nibble of the capabilities: the Messenger release"))
field("extcaps", ProtoField.uint32("msnp.extcaps", "Extended capabilities", base.HEX))
field("skipped", ProtoField.bytes("msnp.skipped", "Bytes that are not MSNP"))
field("p2p", ProtoField.bytes("msnp.p2p", "P2P chunk", base.NONE, "An application/x-msnmsgrp2p body: binary header, data, footer"))
field("p2p_layout", ProtoField.string("msnp.p2p.header", "Header layout", base.ASCII, "v1 (48 bytes, little-endian) or v2 (TLP, big-endian)"))
field("p2p_basis", ProtoField.string("msnp.p2p.header_basis", "Layout chosen because", base.ASCII))
field("p2p_kind", ProtoField.string("msnp.p2p.kind", "Chunk kind", base.ASCII, "slp, data, data_preparation, ack, nak, control, syn, error, close_ack, direct_handshake"))
field("p2p_session", ProtoField.uint32("msnp.p2p.session_id", "Session ID", base.DEC, nil, nil, "0: an MSNSLP message"))
field("p2p_identifier", ProtoField.uint32("msnp.p2p.identifier", "Identifier", base.DEC))
field("p2p_offset", ProtoField.uint64("msnp.p2p.offset", "Offset", base.DEC, nil, nil, "Where the chunk sits in its message"))
field("p2p_total", ProtoField.uint64("msnp.p2p.total_size", "Total size", base.DEC, nil, nil, "Bytes of the whole message"))
field("p2p_size", ProtoField.uint32("msnp.p2p.message_size", "Message size", base.DEC, nil, nil, "v1: data bytes of this chunk; v2: bytes after the header"))
field("p2p_flags", ProtoField.uint32("msnp.p2p.flags", "Flags", base.HEX))
field("p2p_flag_names", ProtoField.string("msnp.p2p.flag_names", "Flag names", base.ASCII))
field("p2p_ack_session", ProtoField.uint32("msnp.p2p.ack_session_id", "Ack session ID", base.DEC))
field("p2p_ack_identifier", ProtoField.uint64("msnp.p2p.ack_identifier", "Ack identifier", base.DEC, nil, nil,
  "v1: the header field at offset 36; v2: the ACK TLV"))
field("p2p_ack_total", ProtoField.uint64("msnp.p2p.ack_total_size", "Ack total size", base.DEC))
field("p2p_acked", ProtoField.uint64("msnp.p2p.acked_identifier", "Acknowledged identifier", base.DEC))
field("p2p_header_length", ProtoField.uint8("msnp.p2p.header_length", "Header length", base.DEC))
field("p2p_opcode", ProtoField.uint8("msnp.p2p.opcode", "Opcode", base.HEX))
field("p2p_opcode_names", ProtoField.string("msnp.p2p.opcode_names", "Opcode names", base.ASCII))
field("p2p_tlv_type", ProtoField.uint8("msnp.p2p.tlv.type", "TLV type", base.DEC))
field("p2p_tlv_value", ProtoField.bytes("msnp.p2p.tlv.value", "TLV value"))
field("p2p_peer_protocol", ProtoField.uint16("msnp.p2p.peer.protocol_version", "Peer protocol version", base.DEC))
field("p2p_peer_impl", ProtoField.uint16("msnp.p2p.peer.implementation_id", "Peer implementation ID", base.DEC))
field("p2p_peer_version", ProtoField.uint16("msnp.p2p.peer.version", "Peer version", base.DEC))
field("p2p_peer_caps", ProtoField.uint32("msnp.p2p.peer.capabilities", "Peer capabilities", base.HEX))
field("p2p_nak", ProtoField.uint64("msnp.p2p.nak_identifier", "NAK of identifier", base.DEC))
field("p2p_data_header_length", ProtoField.uint8("msnp.p2p.data_header_length", "Data header length", base.DEC))
field("p2p_tf", ProtoField.uint8("msnp.p2p.tf_combination", "TF combination", base.HEX))
field("p2p_tf_names", ProtoField.string("msnp.p2p.tf_names", "TF names", base.ASCII))
field("p2p_package", ProtoField.uint16("msnp.p2p.package_number", "Package number", base.DEC))
field("p2p_remaining", ProtoField.uint64("msnp.p2p.data_remaining", "Data remaining", base.DEC))
field("p2p_data", ProtoField.bytes("msnp.p2p.data", "Data"))
field("p2p_app_id", ProtoField.uint32("msnp.p2p.app_id", "Application ID", base.DEC, nil, nil, "The big-endian footer"))
field("p2p_app_name", ProtoField.string("msnp.p2p.app_name", "Application", base.ASCII))
field("p2p_slp", ProtoField.string("msnp.p2p.slp", "MSNSLP start line"))

-- The list bits of the `listbits` parameter type (dissectors/lists.toml).
local F_LISTS = {}
for _, b in ipairs(GEN.lists) do
  local label = b.name
  if b.meaning ~= "" then
    label = label .. " (" .. b.meaning .. ")"
  end
  F_LISTS[#F_LISTS + 1] = ProtoField.bool(b.abbr, label, 32, nil, b.bit)
end

-- P2P v1 flag bits and v2 opcode bits (payload/p2p.rs names).
local F_P2P_FLAGS, F_P2P_OPS = {}, {}
for _, b in ipairs(GEN.p2p.flag_bits) do
  F_P2P_FLAGS[#F_P2P_FLAGS + 1] = ProtoField.bool("msnp.p2p.flags." .. b[2], b[2], 32, nil, b[1])
end
for _, b in ipairs(GEN.p2p.opcode_bits) do
  F_P2P_OPS[#F_P2P_OPS + 1] = ProtoField.bool("msnp.p2p.opcode." .. b[2], b[2], 8, nil, b[1])
end

local F_CAPS, F_EXTCAPS = {}, {}
for _, c in ipairs(GEN.caps) do
  local f
  if c.single then
    f = ProtoField.bool(c.abbr, c.name, 32, nil, c.bit, c.meaning)
  else
    f = ProtoField.uint32(c.abbr, c.name, base.HEX, nil, c.bit, c.meaning)
  end
  if c.ext then
    F_EXTCAPS[#F_EXTCAPS + 1] = f
  else
    F_CAPS[#F_CAPS + 1] = f
  end
end

-- One field per named parameter of each command's forms.
local PF = {}
for _, d in ipairs(GEN.fields) do
  local abbr, label, class, desc = d[1], d[2], d[3], d[4]
  if class == "uint" then
    PF[abbr] = ProtoField.uint32(abbr, label, base.DEC, nil, nil, desc)
  else
    PF[abbr] = ProtoField.string(abbr, label, base.UNICODE, desc)
  end
end

local fields = {}
for _, f in pairs(F) do
  fields[#fields + 1] = f
end
for _, list in ipairs({ F_LISTS, F_CAPS, F_EXTCAPS, F_P2P_FLAGS, F_P2P_OPS }) do
  for _, f in ipairs(list) do
    fields[#fields + 1] = f
  end
end
for _, f in pairs(PF) do
  fields[#fields + 1] = f
end
msnp.fields = fields

local E = {
  unknown = ProtoExpert.new("msnp.unknown_command", "Command not in msntap's tables", expert.group.UNDECODED, expert.severity.WARN),
  unmatched = ProtoExpert.new("msnp.unmatched_form", "No form of this command fits the line", expert.group.UNDECODED, expert.severity.NOTE),
  truncated = ProtoExpert.new("msnp.payload.truncated", "Payload truncated", expert.group.MALFORMED, expert.severity.WARN),
  guess = ProtoExpert.new("msnp.payload.guessed", "Payload length guessed for an unknown command", expert.group.ASSUMPTION, expert.severity.NOTE),
  oversize = ProtoExpert.new("msnp.payload.oversize", "Declared payload too large: not read", expert.group.PROTOCOL, expert.severity.WARN),
  desync = ProtoExpert.new("msnp.desync", "Bytes that are not MSNP: skipped to the next command line", expert.group.MALFORMED, expert.severity.WARN),
  error = ProtoExpert.new("msnp.error_reply", "Error reply", expert.group.RESPONSE_CODE, expert.severity.NOTE),
  midway = ProtoExpert.new("msnp.midway", "Bytes before the first command line of a direction", expert.group.SEQUENCE, expert.severity.NOTE),
  badnum = ProtoExpert.new("msnp.not_a_number", "Parameter is not a number", expert.group.PROTOCOL, expert.severity.NOTE),
  p2p = ProtoExpert.new("msnp.p2p.problem", "P2P header does not fit its body", expert.group.MALFORMED, expert.severity.WARN),
}
msnp.experts = { E.unknown, E.unmatched, E.truncated, E.guess, E.oversize, E.desync, E.midway, E.error, E.badnum, E.p2p }

msnp.prefs.ports = Pref.range("Extra TCP ports", "", "TCP ports besides 1863 whose traffic is MSNP (switchboards are also found by heuristic and from XFR/RNG)", 65535)
msnp.prefs.heuristic = Pref.bool("Find MSNP on other ports", true, "Try connections on any port whose first line is a known MSNP command")

local f_syn = Field.new("tcp.flags.syn")
local f_ack = Field.new("tcp.flags.ack")
local f_http_request = Field.new("http.request")
local f_http_uri = Field.new("http.request.uri")

local xml_dissector = Dissector.get("xml")

-- Capture-wide state, cleared by init(): connections keyed by their sorted address pair,
-- the state each dissector call started from (frames are re-dissected out of order), the
-- SYN senders, and server addresses learned from XFR/RNG.
local conns, snapshots, memos, syn_client, learned, learned_count, learned_ports
local extra_ports = {}
-- The ports msntap always reads as MSNP (capture FlowOptions).
local msnp_ports = {}
for _, p in ipairs(GEN.ports) do
  msnp_ports[p] = true
end

local function reset()
  conns = {}
  snapshots = {}
  memos = {}
  syn_client = {}
  learned = {}
  learned_count = 0
  learned_ports = learned_ports or {}
end
reset()
msnp.init = reset

local function endpoint(addr, port)
  local a = tostring(addr)
  if a:find(":", 1, true) then
    return "[" .. a .. "]:" .. port
  end
  return a .. ":" .. port
end

local function conn_key(pinfo, prefix)
  local a = endpoint(pinfo.src, pinfo.src_port)
  local b = endpoint(pinfo.dst, pinfo.dst_port)
  if b < a then
    a, b = b, a
  end
  return (prefix or "") .. a .. " " .. b
end

local function is_server_port(p)
  return msnp_ports[p] == true or extra_ports[p] == true
end

local function tcp_port_table()
  return DissectorTable.get("tcp.port")
end

local function apply_ports()
  local t = tcp_port_table()
  for p in pairs(extra_ports) do
    if not msnp_ports[p] and not learned_ports[p] then
      t:remove(p, msnp)
    end
  end
  extra_ports = {}
  local spec = tostring(msnp.prefs.ports or "")
  for part in spec:gmatch("[^,]+") do
    local a, b = part:match("^%s*([0-9]+)%s*%-%s*([0-9]+)%s*$")
    if a == nil then
      a = part:match("^%s*([0-9]+)%s*$")
      b = a
    end
    if a ~= nil then
      local lo, hi = tonumber(a), tonumber(b)
      if lo <= hi and hi <= 65535 and hi - lo < 65536 then
        for p = lo, hi do
          extra_ports[p] = true
          t:add(p, msnp)
        end
      end
    end
  end
end

function msnp.prefs_changed()
  apply_ports()
end

-- Remembers a server address from XFR/RNG; later connections to it are MSNP of that service.
local function learn(address, target, version)
  if learned[address] == nil then
    if learned_count >= MAX_LEARNED then
      learned = {}
      learned_count = 0
    end
    learned_count = learned_count + 1
  end
  learned[address] = { service = target, version = version }
  local port = tonumber(address:match(":([0-9]+)$") or "")
  if port ~= nil and port > 0 and port <= 65535 and not is_server_port(port) and not learned_ports[port] then
    learned_ports[port] = true
    tcp_port_table():add(port, msnp)
  end
end

-- Who is the client: the SYN's sender; otherwise the side on an MSNP port or learned
-- address is the server; otherwise the side with the lower port is.
local function orient(pinfo, key)
  local src = endpoint(pinfo.src, pinfo.src_port)
  local dst = endpoint(pinfo.dst, pinfo.dst_port)
  local client = syn_client[key]
  if client == src then
    return src, dst
  elseif client == dst then
    return dst, src
  end
  local function srv(ep, port)
    return is_server_port(port) or learned[ep] ~= nil
  end
  local s_srv, d_srv = srv(src, pinfo.src_port), srv(dst, pinfo.dst_port)
  local src_is_server
  if s_srv ~= d_srv then
    src_is_server = s_srv
  else
    src_is_server = pinfo.src_port < pinfo.dst_port
  end
  if src_is_server then
    return dst, src
  end
  return src, dst
end

-- The connection a TCP segment belongs to, created on first sight. `decided` false: not
-- yet known to be MSNP (no MSNP port, no learned address, no command line seen yet).
local function connection(pinfo, key)
  local c = conns[key]
  if c ~= nil then
    return c
  end
  local client, server = orient(pinfo, key)
  local hint = learned[server]
  local server_port = tonumber(server:match(":([0-9]+)$"))
  c = { client = client, server = server, seen = 0, syn = syn_client[key] ~= nil }
  c.expected = is_server_port(server_port) or hint ~= nil
  if hint ~= nil then
    local v = nil
    if hint.service == "SB" then
      v = hint.version
    end
    c.state = new_state(hint.service, v)
    c.detail = hint.service .. " address learned from a referral earlier in the capture"
  else
    c.state = new_state(nil, nil)
    if c.expected then
      c.detail = "MSNP port " .. server_port
    else
      c.detail = "MSNP command line seen on a port not otherwise watched"
    end
  end
  c.state.seek = { c2s = true, s2c = true }
  c.state.anywhere = { c2s = not c.syn, s2c = not c.syn }
  conns[key] = c
  return c
end

-- Decides, on the first pass, whether a connection not on an MSNP port is MSNP.
local function accept(c, s)
  if c.expected or c.accepted then
    return true
  end
  if c.rejected then
    return false
  end
  -- A connection opened by a SYN must start with a command line; one seen mid-way may
  -- start on one at any line within its first 4 KiB.
  local r, cand = find_start(s, 1, not c.syn)
  if r == "at" then
    c.accepted = true
    return true
  end
  if r == "more" and cand <= #s then
    -- The start of a plausible line: taken on trial, so that TCP gathers the rest of it.
    c.accepted = true
    c.state.tentative = true
    return true
  end
  c.seen = c.seen + #s
  if r == "no" or c.seen > DETECT_WINDOW then
    c.rejected = true
  end
  return false
end

-- The Info column: this call's commands, after those of an earlier call on the same frame
-- (the protocol column already says MSNP then) or after HTTP's text for gateway bodies.
local function set_info(pinfo, text, gateway)
  local proto = gateway and "MSNP/HTTP" or "MSNP"
  if gateway or tostring(pinfo.cols.protocol) == proto then
    pinfo.cols.info:append(" | " .. text)
  else
    pinfo.cols.info:set(text)
  end
  pinfo.cols.protocol = proto
end

local function short(line)
  if #line > 160 then
    return line:sub(1, 157) .. "..."
  end
  return line
end

-- MIME headers ("Name: value" lines up to an empty line) of s from index i; returns the
-- headers with their positions and the index where the body starts (nil if no end).
local function mime_headers(s, i, limit)
  local hs = {}
  local pos = i
  while pos <= limit do
    local lf = s:find("\n", pos, true)
    if lf == nil or lf > limit then
      return hs, nil
    end
    local e = lf - 1
    if e >= pos and s:byte(e) == 13 then
      e = e - 1
    end
    local text = s:sub(pos, e)
    if text == "" then
      return hs, lf + 1
    end
    local name, value = text:match("^([^:]+):%s*(.*)$")
    local voff = nil
    if name ~= nil then
      voff = #text - #value
    end
    hs[#hs + 1] = { from = pos, len = lf - pos + 1, text = text, name = name, value = value, voff = voff }
    pos = lf + 1
  end
  return hs, nil
end

local function add_headers(tvb, tree, hs, base0)
  local ctype
  for _, h in ipairs(hs) do
    local it = tree:add(F.mime_header, tvb(base0 + h.from - 1, h.len), h.text)
    if h.name ~= nil then
      it:add(F.mime_name, tvb(base0 + h.from - 1, #h.name), h.name)
      it:add(F.mime_value, tvb(base0 + h.from - 1 + h.voff, #h.value), h.value)
      local m = GEN.mime_headers[h.name:lower()]
      if m ~= nil and m ~= "" then
        it:append_text(" (" .. m .. ")")
      end
      if h.name:lower() == "content-type" then
        ctype = h.value
      end
    end
  end
  return ctype
end

-- P2P bodies (application/x-msnmsgrp2p): the binary header of payload/p2p.rs, v1 (48 bytes
-- little-endian) or v2/TLP (big-endian, with TLVs), the data and the big-endian application
-- id footer. A hand-written copy of p2p.rs's layout choice and chunk kinds; the names are
-- generated (GEN.p2p). One chunk at a time: chunks are not reassembled.

-- Lua numbers of unsigned fields read from b (1-based index i); floats past 2^53 are only
-- compared, never shown (Wireshark reads the shown values from the bytes).
local function be16(b, i)
  local x, y = b:byte(i, i + 1)
  return x * 256 + y
end
local function be32(b, i)
  local w, x, y, z = b:byte(i, i + 3)
  return ((w * 256 + x) * 256 + y) * 256 + z
end
local function le32(b, i)
  local w, x, y, z = b:byte(i, i + 3)
  return ((z * 256 + y) * 256 + x) * 256 + w
end
local function le64(b, i)
  return le32(b, i) + le32(b, i + 4) * 4294967296.0
end
local function be_num(b, i, n)
  local v = 0.0
  for k = 0, math.min(n, 8) - 1 do
    v = v * 256 + b:byte(i + k)
  end
  return v
end

-- A value for a 64-bit field: Wireshark wants a UInt64 there, not a Lua number (v < 2^53).
local function u64(v)
  if UInt64 ~= nil then
    return UInt64.new(v)
  end
  return v
end

-- data_size plus the data remaining (the big-endian u64 at range r, if any), saturating
-- as p2p.rs adds them. Exact in Wireshark (UInt64); elsewhere only below 2^53.
local function p2p_total(data_size, r, rem)
  if UInt64 ~= nil then
    local v = r ~= nil and r:uint64() or UInt64.new(0)
    local max = UInt64.max()
    if v > max - data_size then
      return max
    end
    return v + data_size
  end
  if data_size + rem < 9007199254740992 then
    return math.floor(data_size + rem)
  end
  return nil
end

-- Is bit (a power of two) set in v? (No bitwise operators in Lua 5.2.)
local function has_bit(v, bit)
  return math.floor(v / bit) % 2 == 1
end

-- Names of the bits of v (in table order), and whether bits outside the table are set.
local function bit_names(v, bits)
  local out, rest = {}, v
  for _, e in ipairs(bits) do
    if has_bit(v, e[1]) then
      out[#out + 1] = e[2]
      rest = rest - e[1]
    end
  end
  return out, rest > 0
end

-- The name a { value, name } list gives v, or nil.
local function name_of(list, v)
  for _, e in ipairs(list) do
    if e[1] == v then
      return e[2]
    end
  end
  return nil
end

local function p2p_flag_names(f)
  return name_of(GEN.p2p.flag_values, f) or table.concat(bit_names(f, GEN.p2p.flag_bits), ",")
end

-- Names as one string, "none" for no name (msntap's name lists, joined).
local function joined(names)
  if #names == 0 then
    return "none"
  end
  return table.concat(names, ",")
end

local function p2p_opcode_names(op)
  local names, other = bit_names(op, GEN.p2p.opcode_bits)
  if other then
    names[#names + 1] = "unknown"
  end
  return joined(names)
end

local function p2p_tf_names(tf)
  local names = {}
  local first = has_bit(tf, GEN.p2p.tf_first)
  if first then
    names[1] = "first"
  end
  local k = tf - (first and GEN.p2p.tf_first or 0)
  if k ~= 0 then
    names[#names + 1] = name_of(GEN.p2p.tf_kinds, k) or "unknown"
  end
  return joined(names)
end

local function p2p_app_name(id)
  return name_of(GEN.p2p.app_names, id) or "unknown"
end

local function fits_v1(b)
  if #b < 48 then
    return false
  end
  local size = le32(b, 25)
  local rest = #b - 48
  local off, total = le64(b, 9), le64(b, 17)
  return (rest == size or rest == size + 4) and off + size <= math.max(total, size)
end

local function fits_v2(b)
  if #b < 8 then
    return false
  end
  local hl, op, size = b:byte(1), b:byte(2), be16(b, 3)
  if hl < 8 or op > 3 or hl > #b then
    return false
  end
  local rest = #b - hl
  if rest ~= size and rest ~= size + 4 then
    return false
  end
  if size > 0 then
    local dhl = b:byte(hl + 1) or 0
    if dhl < 8 or dhl > size then
      return false
    end
  end
  return true
end

-- v1 or v2, and why (p2p.rs choose_layout).
local function p2p_layout(b, version, dest, src)
  local guid = (dest ~= nil and dest:find(";{", 1, true)) or (src ~= nil and src:find(";{", 1, true))
  local v1, v2 = fits_v1(b), fits_v2(b)
  local l, why
  if guid then
    l, why = "v2", "P2P-Dest/P2P-Src name an endpoint GUID"
  elseif version ~= nil and version < GEN.p2p.v2_from then
    l, why = "v1", "MSNP" .. version .. " predates P2P v2"
  end
  if l ~= nil then
    local fits = (l == "v1" and v1) or (l == "v2" and v2)
    if fits then
      return l, why
    end
    local other = l == "v1" and "v2" or "v1"
    if (other == "v1" and v1) or (other == "v2" and v2) then
      return other, "assumed " .. other .. ": the lengths fit it, not " .. l .. " (" .. why .. ")"
    end
    return l, why
  end
  if v1 and not v2 then
    return "v1", "assumed v1: only the v1 lengths fit"
  elseif v2 and not v1 then
    return "v2", "assumed v2: only the v2 lengths fit"
  elseif v1 and v2 then
    return "v1", "assumed v1: both layouts fit and no endpoint GUID was given"
  end
  return "v1", "assumed v1: neither layout's lengths fit"
end

local function all_zero(s)
  return not s:find("[^%z]")
end

-- The data, footer and SLP start line of a chunk whose data starts at b[start + 1] and is
-- declared `declared` bytes long (p2p.rs finish_chunk).
local function p2p_finish(t, rng, b, kind, start, declared)
  local rest = #b - start
  local dlen = math.min(declared, rest)
  if dlen > 0 then
    t:add(F.p2p_data, rng(start, dlen))
  end
  if rest >= dlen + 4 then
    local id = be32(b, start + dlen + 1)
    t:add(F.p2p_app_id, rng(start + dlen, 4))
    t:add(F.p2p_app_name, rng(start + dlen, 4), p2p_app_name(id)):set_generated()
  end
  if kind == "slp" and dlen > 0 then
    local data = b:sub(start + 1, start + dlen)
    local first = data:match("^[^\n]*"):gsub("%s+$", "")
    t:add(F.p2p_slp, rng(start, math.min(dlen, #first > 0 and #first or 1)), first)
  end
  if declared > rest then
    t:add_proto_expert_info(E.p2p, "header says " .. declared .. " data bytes, " .. rest .. " present")
  end
end

local function p2p_v1(t, rng, b)
  if #b < 48 then
    t:add_proto_expert_info(E.p2p, "P2P body of " .. #b .. " bytes is shorter than the 48-byte v1 header")
    return
  end
  local session, total, size, flags = le32(b, 1), le64(b, 17), le32(b, 25), le32(b, 29)
  t:add_le(F.p2p_session, rng(0, 4))
  t:add_le(F.p2p_identifier, rng(4, 4))
  t:add_le(F.p2p_offset, rng(8, 8))
  t:add_le(F.p2p_total, rng(16, 8))
  t:add_le(F.p2p_size, rng(24, 4))
  local ft = t:add_le(F.p2p_flags, rng(28, 4))
  for _, f in ipairs(F_P2P_FLAGS) do
    ft:add_le(f, rng(28, 4))
  end
  local fnames = p2p_flag_names(flags)
  -- Only unnamed bits set: no names (msntap's JSON then has no flag_names either).
  if fnames ~= "" then
    ft:add(F.p2p_flag_names, rng(28, 4), fnames):set_generated()
  end
  t:add_le(F.p2p_ack_session, rng(32, 4))
  t:add(F.p2p_ack_identifier, rng(36, 4), u64(le32(b, 37)))
  t:add_le(F.p2p_ack_total, rng(40, 8))
  local avail = math.min(size, #b - 48)
  local data = b:sub(49, 48 + avail)
  local kind
  if has_bit(flags, 0x1) then
    kind = "nak"
  elseif has_bit(flags, 0x2) then
    kind = "ack"
  elseif has_bit(flags, 0x8) or has_bit(flags, 0x80) then
    kind = "error"
  elseif has_bit(flags, 0x40) then
    kind = "close_ack"
  elseif has_bit(flags, 0x100) then
    kind = "direct_handshake"
  elseif size == 0 then
    kind = "control"
  elseif session == 0 then
    kind = "slp"
  elseif has_bit(flags, 0x10) or has_bit(flags, 0x20) then
    kind = "data"
  elseif total == 4 and size == 4 and all_zero(data) then
    kind = "data_preparation"
  else
    kind = "data"
  end
  t:add(F.p2p_kind, rng(0, 48), kind):set_generated()
  if kind == "ack" or kind == "nak" then
    -- Captures show the acknowledged message's identifier at offset 32 (p2p.rs).
    t:add(F.p2p_acked, rng(32, 4), u64(le32(b, 33))):set_generated()
  end
  p2p_finish(t, rng, b, kind, 48, size)
end

-- TLVs of b[from..to] (1-based, inclusive); type 0 is padding and ends the list.
local function p2p_tlvs(b, from, to)
  local out = {}
  local i = from
  while i + 1 <= to do
    local ty, len = b:byte(i), b:byte(i + 1)
    if ty == 0 then
      break
    end
    local e = math.min(i + 2 + len, to + 1)
    out[#out + 1] = { ty = ty, at = i, vat = i + 2, len = e - i - 2 }
    i = e
  end
  return out
end

local function p2p_v2(t, rng, b)
  if #b < 8 then
    t:add_proto_expert_info(E.p2p, "P2P body of " .. #b .. " bytes is shorter than the 8-byte v2 header")
    return
  end
  local hl, op, size = b:byte(1), b:byte(2), be16(b, 3)
  t:add(F.p2p_header_length, rng(0, 1))
  local ot = t:add(F.p2p_opcode, rng(1, 1))
  for _, f in ipairs(F_P2P_OPS) do
    ot:add(f, rng(1, 1))
  end
  ot:add(F.p2p_opcode_names, rng(1, 1), p2p_opcode_names(op)):set_generated()
  t:add(F.p2p_size, rng(2, 2), size)
  t:add(F.p2p_identifier, rng(4, 4))
  if hl < 8 or hl > #b then
    t:add_proto_expert_info(E.p2p, "v2 header length " .. hl .. " does not fit a body of " .. #b .. " bytes")
    return
  end
  local kind = "control"
  for _, v in ipairs(p2p_tlvs(b, 9, hl)) do
    local it = t:add(rng(v.at - 1, v.len + 2), "TLV type " .. v.ty .. ", " .. v.len .. " bytes")
    it:add(F.p2p_tlv_type, rng(v.at - 1, 1))
    if v.ty == 1 and v.len == 12 then
      it:append_text(" (peer info)")
      it:add(F.p2p_peer_protocol, rng(v.vat - 1, 2))
      it:add(F.p2p_peer_impl, rng(v.vat + 1, 2))
      it:add(F.p2p_peer_version, rng(v.vat + 3, 2))
      it:add(F.p2p_peer_caps, rng(v.vat + 7, 4))
    elseif (v.ty == 2 or v.ty == 3) and (v.len == 4 or v.len == 8) then
      -- ACK (2) or NAK (3) of a message identifier; an ACK names the acknowledged one.
      local r = rng(v.vat - 1, v.len)
      local fields = v.ty == 2 and { F.p2p_ack_identifier, F.p2p_acked } or { F.p2p_nak }
      it:append_text(v.ty == 2 and " (ack)" or " (nak)")
      for k, f in ipairs(fields) do
        local item
        if v.len == 8 then
          item = it:add(f, r)
        else
          item = it:add(f, r, u64(be32(b, v.vat)))
        end
        if k > 1 then
          item:set_generated()
        end
      end
      kind = v.ty == 2 and "ack" or "nak"
    else
      it:append_text(" (unknown)")
      if v.len > 0 then
        it:add(F.p2p_tlv_value, rng(v.vat - 1, v.len))
      end
    end
  end
  if size == 0 then
    if has_bit(op, 0x1) and kind == "control" then
      kind = "syn"
    end
    t:add(F.p2p_kind, rng(0, hl), kind):set_generated()
    p2p_finish(t, rng, b, kind, hl, 0)
    return
  end
  if #b - hl < 8 then
    t:add(F.p2p_kind, rng(0, hl), "control"):set_generated()
    t:add_proto_expert_info(E.p2p, "v2 message of " .. size .. " bytes but only " .. (#b - hl) .. " after the header")
    return
  end
  local dhl, tf, session = b:byte(hl + 1), b:byte(hl + 2), be32(b, hl + 5)
  t:add(F.p2p_data_header_length, rng(hl, 1))
  local tt = t:add(F.p2p_tf, rng(hl + 1, 1))
  tt:add(F.p2p_tf_names, rng(hl + 1, 1), p2p_tf_names(tf)):set_generated()
  t:add(F.p2p_package, rng(hl + 2, 2))
  t:add(F.p2p_session, rng(hl + 4, 4))
  if dhl < 8 or dhl > size or dhl > #b - hl then
    t:add(F.p2p_kind, rng(hl, 8), "control"):set_generated()
    t:add_proto_expert_info(E.p2p, "v2 data header length " .. dhl .. " does not fit message size " .. size)
    return
  end
  -- The data-remaining TLV (the last one counts, as in p2p.rs).
  local rem, rem_range = 0, nil
  for _, v in ipairs(p2p_tlvs(b, hl + 9, hl + dhl)) do
    if v.ty == 1 and v.len == 8 then
      rem = be_num(b, v.vat, 8)
      rem_range = rng(v.vat - 1, 8)
    else
      local it = t:add(rng(v.at - 1, v.len + 2), "Data TLV type " .. v.ty .. ", " .. v.len .. " bytes (unknown)")
      if v.len > 0 then
        it:add(F.p2p_tlv_value, rng(v.vat - 1, v.len))
      end
    end
  end
  if rem_range ~= nil then
    t:add(F.p2p_remaining, rem_range)
  else
    t:add(F.p2p_remaining, rng(hl, dhl), u64(0)):set_generated()
  end
  local data_size = size - dhl
  local start = hl + dhl
  local avail = math.min(data_size, #b - start)
  local data = b:sub(start + 1, start + avail)
  local first = has_bit(tf, GEN.p2p.tf_first)
  if first then
    t:add(F.p2p_offset, rng(hl, dhl), u64(0)):set_generated()
    local total = p2p_total(data_size, rem_range, rem)
    if total ~= nil then
      t:add(F.p2p_total, rng(hl, dhl), total):set_generated()
    end
  end
  if session == 0 then
    kind = "slp"
  elseif has_bit(tf, 0x4) then
    kind = "data"
  elseif first and rem == 0 and data_size == 4 and all_zero(data) then
    kind = "data_preparation"
  else
    kind = "data"
  end
  t:add(F.p2p_kind, rng(hl, dhl), kind):set_generated()
  p2p_finish(t, rng, b, kind, start, data_size)
end

-- The P2P chunk in s[from..to]; hs: the MIME headers it came with; version: the
-- connection's negotiated version when its command was framed.
local function add_p2p(tvb, tree, s, from, to, base0, hs, version)
  local b = s:sub(from, to)
  local dest, src
  for _, h in ipairs(hs or {}) do
    if h.name ~= nil then
      local n = h.name:lower()
      if n == "p2p-dest" and dest == nil then
        dest = h.value
      elseif n == "p2p-src" and src == nil then
        src = h.value
      end
    end
  end
  local function rng(o, l)
    return tvb(base0 + from - 1 + o, l)
  end
  local layout, why = p2p_layout(b, version, dest, src)
  local t = tree:add(F.p2p, rng(0, #b))
  t:add(F.p2p_layout, rng(0, math.min(#b, layout == "v1" and 48 or 8)), layout):set_generated()
  t:add(F.p2p_basis, rng(0, math.min(#b, layout == "v1" and 48 or 8)), why):set_generated()
  if layout == "v1" then
    p2p_v1(t, rng, b)
  else
    p2p_v2(t, rng, b)
  end
end

local function add_body(tvb, pinfo, tree, s, from, to, base0, ctype, hs, version)
  if from > to then
    return
  end
  local r = tvb(base0 + from - 1, to - from + 1)
  local ct = (ctype or ""):lower()
  if ct:match("^%s*([^;%s]*)") == "application/x-msnmsgrp2p" then
    add_p2p(tvb, tree, s, from, to, base0, hs, version)
  elseif ct:find("^text/") or ct:find("^application/x%-msmsgs") then
    tree:add(F.mime_body, r, s:sub(from, to))
  elseif ct:find("xml") and xml_dissector ~= nil then
    pcall(function() xml_dissector:call(r:tvb(), pinfo, tree) end)
  else
    tree:add(F.payload, r)
  end
end

local function add_payload(tvb, pinfo, tree, s, p, base0)
  local from = p.start + p.head_len
  local to = p.start + p.frame_len - 1
  local plen = to - from + 1
  local range
  if plen > 0 then
    range = tvb(base0 + from - 1, plen)
  else
    range = tvb(base0 + p.start - 1, p.head_len)
  end
  local kind = p.form and p.form.kind
  if is_digit(p.name:byte(1)) then
    kind = "xml"
  end
  local label = "Payload: " .. p.payload_len .. " bytes"
  if kind ~= nil then
    label = label .. " (" .. kind .. ")"
  end
  local pt = tree:add(range, label)
  pt:add(F.payload_len, range, p.payload_len)
  if p.guess then
    pt:add_proto_expert_info(E.guess, "Payload length guessed: the last token of an unknown command, and no command line follows")
  end
  if p.truncated ~= nil then
    pt:add_proto_expert_info(E.truncated, "Payload truncated: " .. p.truncated .. " of " .. p.payload_len .. " bytes")
  end
  if plen <= 0 then
    return
  end
  if kind == "mime" or kind == "multipart" then
    local pos = from
    -- The body is typed by the last block's headers (payload/mime.rs).
    local ctype, last_hs
    local blocks = 0
    while pos <= to and blocks < 3 do
      local hs, body = mime_headers(s, pos, to)
      if #hs == 0 then
        break
      end
      blocks = blocks + 1
      local label = "MIME headers"
      if kind == "multipart" and hs[1].name ~= nil then
        label = hs[1].name .. " headers"
      end
      local ht = pt:add(range, label)
      local ct = add_headers(tvb, ht, hs, base0)
      ctype, last_hs = ct, hs
      if ct ~= nil then
        pt:add(F.content_type, range, ct)
      end
      if body == nil then
        pos = to + 1
        break
      end
      pos = body
      if kind == "mime" then
        break
      end
      -- A further block of the multipart payload starts with a "Name: value" line.
      local nxt = s:sub(pos, math.min(to, pos + 200))
      if not nxt:find("^[%w%-]+: ") then
        break
      end
    end
    add_body(tvb, pinfo, pt, s, pos, to, base0, ctype, last_hs, p.frame_version)
  elseif kind == "xml" and xml_dissector ~= nil and s:sub(from, from) == "<" then
    pcall(function() xml_dissector:call(range:tvb(), pinfo, pt) end)
  elseif kind == "text" or kind == "xml" then
    pt:add(F.payload_text, range, s:sub(from, to))
  else
    pt:add(F.payload, range)
  end
end

local function add_param(tvb, t, p, tok, r)
  local f = PF[p.f]
  if p.class == "uint" then
    local v = u32(tok)
    if v ~= nil then
      local it = t:add(f, r, v)
      if p.ty == "listbits" then
        for _, lf in ipairs(F_LISTS) do
          it:add(lf, r, v)
        end
      end
    else
      t:add(r, p.label .. ": " .. tok):add_proto_expert_info(E.badnum, p.label .. " is not a 32-bit number: " .. tok)
    end
    return
  end
  local value = tok
  if p.ty == "friendly" or p.ty == "text" or p.ty == "msnobj" then
    value = urldecode(tok)
  end
  local it = t:add(f, r, value)
  if p.values ~= nil and p.values[tok] ~= nil then
    it:append_text(" (" .. p.values[tok] .. ")")
  end
  if p.ty == "address" then
    local h, port = tok:match("^(.+):([0-9]+)$")
    if h ~= nil and u32(port) ~= nil and u32(port) <= 65535 then
      it:add(F.host, r, h)
      it:add(F.port, r, u32(port))
    end
  elseif p.ty == "caps" then
    -- `caps` or `caps:extcaps`, cut at the first colon (protocol/fields.rs caps).
    local a, b = tok, nil
    local colon = tok:find(":", 1, true)
    if colon ~= nil then
      a, b = tok:sub(1, colon - 1), tok:sub(colon + 1)
    end
    local v = u32(a)
    if v ~= nil then
      local ct = it:add(F.caps, r, v)
      for _, cf in ipairs(F_CAPS) do
        ct:add(cf, r, v)
      end
      ct:add(F.caps_client, r, v)
    end
    local e = b and u32(b)
    if e ~= nil then
      local et = it:add(F.extcaps, r, e)
      for _, cf in ipairs(F_EXTCAPS) do
        et:add(cf, r, e)
      end
    end
  end
end

local function add_pdu(tvb, pinfo, tree, s, p, dir, base0, c)
  local arrow = dir == "c2s" and ">>>" or "<<<"
  local whole = tvb(base0 + p.start - 1, p.frame_len)
  local lr = tvb(base0 + p.start - 1, p.line_len > 0 and p.line_len or p.head_len)
  local t = tree:add(msnp, whole, "MSN Messenger Protocol, " .. arrow .. " " .. short(p.line))
  t:add(F.dir, lr, dir):append_text(" (" .. arrow .. ")")
  if c.client ~= nil then
    t:add(F.client, lr, c.client):set_generated()
    t:add(F.server, lr, c.server):set_generated()
  end
  t:add(F.service, lr, p.service)
  if p.version ~= nil then
    t:add(F.version, lr, p.version)
    t:add(F.versions, lr, "MSNP" .. p.version):set_hidden()
  else
    t:add(F.versions, lr, "MSNP" .. p.lo .. "-" .. p.hi)
  end
  t:add(F.line, lr, p.line)
  local function tok_range(i)
    return tvb(base0 + p.start - 1 + p.tpos[i] - 1, #p.args[i])
  end
  local ct = t:add(F.cmd, tvb(base0 + p.start - 1, 3), p.name)
  if #p.args > 0 then
    local a0 = p.tpos[1]
    t:add(F.args, tvb(base0 + p.start - 1 + a0 - 1, p.line_len - a0 + 1), table.concat(p.args, " "))
  end
  local trid
  local numeric = is_digit(p.name:byte(1))
  if numeric then
    local code = tonumber(p.name)
    local e = GEN.errors[code]
    local et = t:add(F.error, tvb(base0 + p.start - 1, 3), code)
    if e ~= nil then
      et:add(F.error_meaning, tvb(base0 + p.start - 1, 3), e[2])
      ct:append_text(" (" .. e[1] .. ": " .. e[2] .. ")")
    end
    et:add_proto_expert_info(E.error, "Error " .. p.name .. (e and (" " .. e[1] .. ": " .. e[2]) or " (not in msntap's tables)"))
    t:add(F.known, lr, e ~= nil)
    trid = 1
  elseif p.def == nil then
    t:add(F.known, lr, false)
    ct:add_proto_expert_info(E.unknown, "Unknown command " .. p.name)
    trid = 1
  else
    t:add(F.known, lr, true)
    local meaning = (p.form and p.form.meaning) or p.def.meaning
    ct:append_text(" (" .. meaning .. ")")
    -- Shown in the command's item already; kept as a field for filters.
    t:add(F.meaning, lr, meaning):set_hidden()
    if p.form == nil then
      ct:add_proto_expert_info(E.unmatched, "No form of " .. p.name .. " fits this line (direction " .. dir
        .. ", service " .. p.service .. ", MSNP" .. p.lo .. "-" .. p.hi .. ", " .. #p.args .. " arguments)")
      trid = 1
    else
      for i = 1, #p.args do
        local pd = param_of(p.form, i)
        if pd == nil then
          break
        end
        if pd.ty == "trid" and trid == nil then
          trid = i
        end
      end
    end
  end
  if trid ~= nil and p.args[trid] ~= nil then
    local v = u32(p.args[trid])
    if v ~= nil then
      t:add(F.trid, tok_range(trid), v)
    end
  end
  if p.form ~= nil and #p.args > 0 then
    local pt = t:add(lr, p.name .. " parameters")
    for i = 1, #p.args do
      local pd = param_of(p.form, i)
      if pd == nil then
        break
      end
      add_param(tvb, pt, pd, p.args[i], tok_range(i))
    end
  end
  if p.referral ~= nil then
    t:add(F.referral, lr, p.referral .. " (" .. p.referral_target .. ")")
  end
  if p.oversize ~= nil then
    t:add(F.payload_len, lr, u32(tostring(p.oversize)) or 0):add_proto_expert_info(E.oversize,
      "Declared payload of " .. p.args[#p.args] .. " bytes exceeds " .. MAX_PAYLOAD .. " bytes: not read")
  elseif p.payload_len ~= nil then
    add_payload(tvb, pinfo, t, s, p, base0)
  end
  return arrow .. " " .. short(p.line)
end

-- Dissects the bytes of one direction of one connection, starting from state st.
-- Returns the number of bytes used; asks TCP for more when a command is incomplete.
local function dissect_bytes(tvb, pinfo, tree, st, memo, skey, dir, eof, gateway, live, c)
  local s = tvb:raw(0, tvb:len())
  local infos = {}
  -- Skipped bytes are gathered into one run until a command or the end comes.
  local skip = nil
  local function flush_skip()
    if skip == nil then
      return
    end
    local k = skip
    skip = nil
    local r = tvb(k.from - 1, k.to - k.from + 1)
    local it = tree:add(msnp, r, "MSN Messenger Protocol, " .. (k.to - k.from + 1) .. " bytes that are not MSNP")
      :add(F.skipped, r)
    if k.midway then
      it:add_proto_expert_info(E.midway, "Not MSNP (" .. k.reason .. ")")
    else
      it:add_proto_expert_info(E.desync, "Not MSNP (" .. k.reason .. ")")
    end
    infos[#infos + 1] = "[not MSNP]"
  end
  local function on_pdu(p)
    flush_skip()
    infos[#infos + 1] = add_pdu(tvb, pinfo, tree, s, p, dir, 0, c)
    if live and p.referral ~= nil then
      learn(p.referral, p.referral_target, p.version)
    end
  end
  local function on_skip(from, to, reason, midway)
    if skip ~= nil and skip.to + 1 == from and skip.reason == reason then
      skip.to = to
    else
      flush_skip()
      skip = { from = from, to = to, reason = reason, midway = midway }
    end
  end
  local stop, need, reject = frame(st, dir, s, eof, on_pdu, on_skip, memo)
  if live and next(memo) ~= nil then
    memos[skey] = memo
  end
  if reject then
    if live then
      c.accepted = false
      c.rejected = true
    end
    return 0
  end
  flush_skip()
  if #infos > 0 then
    set_info(pinfo, table.concat(infos, " | "), gateway)
  end
  -- Nothing to keep when framing stopped at the very end (TCP must not be asked to keep
  -- zero bytes: its reassembly asserts); the state says where the next bytes stand.
  if stop ~= nil and stop <= #s then
    pinfo.desegment_offset = stop - 1
    if need == nil or need <= 0 then
      pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT
    else
      pinfo.desegment_len = need
    end
  end
  return tvb:len()
end

-- Whether two states would frame alike (so that one snapshot can serve both calls).
local function same_state(a, b)
  for _, k in ipairs({ "service", "hinted", "version", "lo", "hi", "logged_in", "tentative" }) do
    if a[k] ~= b[k] then
      return false
    end
  end
  for _, d in ipairs({ "c2s", "s2c" }) do
    local x, y = a.resync[d], b.resync[d]
    if (x == nil) ~= (y == nil) or (x ~= nil and (x.at_line_start ~= y.at_line_start or x.reason ~= y.reason)) then
      return false
    end
    if (a.seek == nil) ~= (b.seek == nil)
      or (a.seek ~= nil and (a.seek[d] ~= b.seek[d] or a.anywhere[d] ~= b.anywhere[d])) then
      return false
    end
  end
  return true
end

-- The state a dissector call starts from: on the first pass the connection's own (and a
-- snapshot of it, shared with the connection's previous call while the state is the
-- same, to keep memory per frame small), afterwards a copy of that snapshot. A call is
-- known by its frame and where its bytes start in it (0 for reassembled bytes: at most
-- one such call per frame); not by its length, since a later pass hands over a
-- reassembled PDU without the bytes after it that the first pass saw. Returns the state,
-- whether it is the live one, the call's memo (see frame) and the call's key.
local function call_state(pinfo, tvb, c, gateway_key)
  local skey
  if gateway_key ~= nil then
    skey = gateway_key .. "#" .. pinfo.number .. ":" .. tvb:offset()
  else
    skey = pinfo.number * 65536 + math.min(tvb:offset(), 65535)
  end
  local snap = snapshots[skey]
  if not pinfo.visited and snap == nil then
    if c.last_snap == nil or not same_state(c.last_snap, c.state) then
      c.last_snap = copy_state(c.state)
    end
    snapshots[skey] = c.last_snap
    return c.state, true, {}, skey
  end
  if snap == nil then
    return nil, false, nil, skey
  end
  return copy_state(snap), false, memos[skey] or {}, skey
end

local function dissect_tcp(tvb, pinfo, tree, from_heuristic)
  local key = conn_key(pinfo)
  local c = conns[key]
  if c == nil then
    if pinfo.visited then
      return 0
    end
    c = connection(pinfo, key)
  end
  if not c.expected and not c.accepted then
    if pinfo.visited or (from_heuristic == false and not msnp.prefs.heuristic) then
      return 0
    end
    if not accept(c, tvb:raw(0, math.min(tvb:len(), DETECT_WINDOW + FIRST_LINE_WINDOW))) then
      return 0
    end
  end
  local st, live, memo, skey = call_state(pinfo, tvb, c, nil)
  if st == nil then
    return 0
  end
  local src = endpoint(pinfo.src, pinfo.src_port)
  local dir = src == c.client and "c2s" or "s2c"
  local eof = pinfo.can_desegment == 0
  return dissect_bytes(tvb, pinfo, tree, st, memo, skey, dir, eof, false, live, c)
end

-- Gateway bodies (HTTP, application/x-msn-messenger): each body is whole, so framing ends
-- with it; state is kept per HTTP connection, the direction taken from request/response.
local function dissect_gateway(tvb, pinfo, tree)
  local key = conn_key(pinfo, "gw ")
  local c = conns[key]
  if c == nil then
    if pinfo.visited then
      return 0
    end
    local service = nil
    local uri = f_http_uri()
    if uri ~= nil then
      service = tostring(uri.value):match("[?&]Server=([A-Z][A-Z])")
      if service ~= "NS" and service ~= "SB" then
        service = nil
      end
    end
    c = { state = new_state(service, nil), expected = true, gateway = true }
    conns[key] = c
  end
  local st, live, memo, skey = call_state(pinfo, tvb, c, key)
  if st == nil then
    return 0
  end
  local req = f_http_request()
  local dir = (req ~= nil and req.value) and "c2s" or "s2c"
  return dissect_bytes(tvb, pinfo, tree, st, memo, skey, dir, true, true, live, c)
end

function msnp.dissector(tvb, pinfo, tree)
  if tvb:len() == 0 then
    return 0
  end
  if pinfo.match_string == "application/x-msn-messenger" then
    return dissect_gateway(tvb, pinfo, tree)
  end
  return dissect_tcp(tvb, pinfo, tree, false)
end

local function heuristic(tvb, pinfo, tree)
  if not msnp.prefs.heuristic or tvb:len() == 0 then
    return false
  end
  local used = dissect_tcp(tvb, pinfo, tree, true)
  if used == 0 then
    return false
  end
  pinfo.conversation = msnp
  return true
end

-- SYN senders, for telling client from server (a postdissector sees every TCP packet).
local syn_watch = Proto("msnp_syn", "MSNP connection opener")
function syn_watch.dissector(tvb, pinfo, tree)
  if pinfo.visited then
    return
  end
  local syn = f_syn()
  if syn == nil or not syn.value then
    return
  end
  local ack = f_ack()
  local key = conn_key(pinfo)
  local src = endpoint(pinfo.src, pinfo.src_port)
  local dst = endpoint(pinfo.dst, pinfo.dst_port)
  if ack ~= nil and ack.value then
    if syn_client[key] == nil then
      syn_client[key] = dst
    end
  else
    -- A new connection on the same address pair starts afresh.
    if syn_client[key] ~= nil or conns[key] ~= nil then
      conns[key] = nil
    end
    syn_client[key] = src
  end
end
register_postdissector(syn_watch)

for p in pairs(msnp_ports) do
  tcp_port_table():add(p, msnp)
end
DissectorTable.get("media_type"):add("application/x-msn-messenger", msnp)
msnp:register_heuristic("tcp", heuristic)
apply_ports()
