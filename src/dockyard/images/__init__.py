"""Image content under $ROOT/images: blobs, extracted layers, archives, and a registry client.

I/O over files and HTTP only; no records (the store's) and no use cases
(engine/images'). The layout (docs/design-notes.md, "Images"):

    $ROOT/images/blobs/sha256/<hex>     a blob, named by the sha256 of its bytes
    $ROOT/images/layers/<hex>/          a layer extracted, named by its diff id;
                                        whiteouts in overlayfs's form, a lowerdir
    $ROOT/images/tmp/                   what is being written: renamed into place
                                        once whole and verified, else removed by gc
"""
