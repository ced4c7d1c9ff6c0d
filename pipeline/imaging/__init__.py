"""Image files without torch: decoding, resizing and class-per-folder scans.

Training, serving, the dashboard's Launch form and the data audit all read images through here, so
this room sits below `training/` and `serving/` and imports neither.
"""
