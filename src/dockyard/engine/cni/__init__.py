"""The CNI use cases: ADD, DEL, CHECK, GC and STATUS of runtime attachments."""
