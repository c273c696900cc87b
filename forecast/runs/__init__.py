"""The run directory's one owner: file names and schema versions, the atomic writer, the JSON encoder, the reader."""
