"""The whole flow through a client openapi-python-client generated from the live schema,
run by the generator's own interpreter (it has httpx and attrs; the project's has not):
`python flow.py GENERATED_DIR BASE_URL TOKEN IMAGE_FILE` prints what happened as JSON."""

import json
import sys

generated, base_url, token, image_file = sys.argv[1:5]
sys.path.insert(0, generated)

import httpx  # noqa: E402
from client import AuthenticatedClient  # noqa: E402
from client.api.images import (  # noqa: E402
    images_confirm,
    images_create,
    images_delete,
    images_download,
    images_get,
    images_list,
)
from client.models import (  # noqa: E402
    Code,
    CreateImageRequest,
    CreateImageRequestContentType,
    Problem,
)

data = open(image_file, "rb").read()  # noqa: SIM115
api = AuthenticatedClient(base_url=base_url, token=token)
created = images_create.sync(
    client=api,
    body=CreateImageRequest(
        filename="generated.png",
        content_type=CreateImageRequestContentType.IMAGEPNG,
        size=len(data),
    ),
    idempotency_key="generated-client-1",
)
image_id = created.image.id
# A client that confirms first and uploads when told to: it branches on the code the
# schema declares, not on the text.
branches = []
confirmed = images_confirm.sync(image_id=image_id, client=api)
while isinstance(confirmed, Problem):
    branches.append(confirmed.code.value)
    if confirmed.code != Code.NOT_UPLOADED or len(branches) > 1:
        raise SystemExit(f"unexpected problem: {confirmed.code}: {confirmed.detail}")
    stored = httpx.request(
        created.upload.method,
        created.upload.url,
        headers=created.upload.headers.additional_properties,
        content=data,
    )
    confirmed = images_confirm.sync(image_id=image_id, client=api)
missing = images_get.sync(image_id="0" * 32, client=api)
fetched = images_get.sync(image_id=image_id, client=api)
link = images_download.sync(image_id=image_id, client=api)
downloaded = httpx.get(link.url).content
listed = images_list.sync(client=api)
deleted = images_delete.sync_detailed(image_id=image_id, client=api)
after = images_get.sync_detailed(image_id=image_id, client=api)
print(
    json.dumps(
        {
            "created": created.image.status,
            "branched_on": branches,
            "put": stored.status_code,
            "confirmed": [confirmed.status, confirmed.width, confirmed.height],
            "fetched": fetched.id == image_id,
            "downloaded": downloaded == data,
            "listed": image_id in [item.id for item in listed.items],
            "deleted": deleted.status_code,
            "after": after.status_code,
            "missing": missing.code.value if isinstance(missing, Problem) else None,
        }
    )
)
