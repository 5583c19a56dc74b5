"""Where images come from: job item types, planning (uploads, zips, folders, URLs) and the reader."""
