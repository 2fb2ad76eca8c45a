-- wrk script: DELETE the manifest paths in $PATHS_FILE, each once, in order, for the duration of
-- the run (the registry's DELETE capacity on the same content regsweep apply deletes). The list
-- must outlast the run: done() warns if it ran out, since the rate would then include filler.
local paths = {}
for line in io.lines(os.getenv("PATHS_FILE")) do
  paths[#paths + 1] = line
end
local sent = 0
request = function()
  sent = sent + 1
  if sent > #paths then
    return wrk.format("GET", "/v2/")
  end
  return wrk.format("DELETE", paths[sent])
end
done = function(summary)
  if summary.requests > #paths then
    io.write(string.format("WARNING: the %d DELETE paths ran out; shorten the run\n", #paths))
  end
end
