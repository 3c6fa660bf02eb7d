"""What a downloaded file is called: the owner's name, with the verified type's extension."""

import urllib.parse

from app.domain.formats import BY_TYPE


def download_name(filename: str, content_type: str) -> str:
    """`holiday.JPG` stays as it is; `invoice.html` holding a verified PNG becomes
    `invoice.html.png`: the browser and the OS go by the last extension, which is
    now always the type the bytes were verified as (and are served as)."""
    extensions = BY_TYPE[content_type].extensions
    if filename.lower().endswith(extensions):
        return filename
    return filename + extensions[0]


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback and the exact name per RFC 6266 / RFC 5987.

    The fallback drops what could break the header or a path (quotes, backslashes,
    separators, control and non-ASCII characters); `filename*` carries every character.
    """
    fallback = "".join(
        char if " " <= char <= "~" and char not in '"\\/;%' else "_" for char in filename
    )
    encoded = urllib.parse.quote(filename, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
