-- Terabee Evo People Counter, binary frames (DEVICES.md section 3): "PC",
-- counter (int32, in minus out), in (uint16), out (uint16), CRC-8 (poly
-- 0x07, init 0) over the ten bytes before it; big-endian. Counters restart
-- at power-off: they are cumulative 16-bit counters, and the agent turns
-- them into deltas across wraps and resets.
--
-- Use with: framing: fixed, frame_length: 11, sync: "PC", decoder: lua.
-- Check the byte order against your unit's manual.

local function crc8(s, n)
  local c = 0
  for i = 1, n do
    c = c ~ s:byte(i)
    for _ = 1, 8 do
      if c & 0x80 ~= 0 then c = ((c << 1) ~ 0x07) & 0xff else c = (c << 1) & 0xff end
    end
  end
  return c
end

function decode(frame, ts)
  if #frame ~= 11 or frame:sub(1, 2) ~= "PC" then
    error("not a people-counter frame")
  end
  if crc8(frame, 10) ~= frame:byte(11) then
    error("CRC mismatch")
  end
  local _, n_in, n_out = string.unpack(">i4I2I2", frame, 3)
  return {
    {metric = "visitors_in", kind = "cumulative", counter = n_in, bits = 16, unit = "persons"},
    {metric = "visitors_out", kind = "cumulative", counter = n_out, bits = 16, unit = "persons"},
  }
end
