-- wrk script: GET every manifest path listed in $PATHS_FILE in turn, with the same Accept header
-- regsweep sends (all four manifest media types).
local paths = {}
for line in io.lines(os.getenv("PATHS_FILE")) do
  paths[#paths + 1] = line
end
local accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
  .. "application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json"
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], { ["Accept"] = accept })
end
