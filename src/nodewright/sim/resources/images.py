"""Images: the catalog's system images and the project's own snapshots and backups (made by the
``create_image`` server action), listed, read, updated, protected and deleted as the API does."""

from __future__ import annotations

import time
from typing import Any

from nodewright.sim import catalog
from nodewright.sim.actions import Action
from nodewright.sim.errors import ApiError, invalid_input, not_found
from nodewright.sim.listing import bool_param, paginate, sort_items
from nodewright.sim.models import ProjectImage
from nodewright.sim.resources.actions import ActionsResource
from nodewright.sim.store import JSON, Query
from nodewright.sim.validation import check_labels, decimal_id, raise_if, require_object

ImageRecord = catalog.Image | ProjectImage
IMAGE_TYPES = ("system", "app", "snapshot", "backup")


def _kind(image: ImageRecord) -> str:
    return image.type if isinstance(image, ProjectImage) else "system"


def _status(image: ImageRecord) -> str:
    return image.status if isinstance(image, ProjectImage) else "available"


def _created(image: ImageRecord) -> str:
    return str(image.to_json()["created"])


class ImagesResource(ActionsResource):
    def _project_images(self, project: str) -> list[ProjectImage]:
        return [img for img in self.images.values() if img.project == project]

    def find_image(self, project: str, ref: object) -> list[ImageRecord]:
        """What a create or rebuild names: a system image by name (one per architecture) or id,
        or one of the project's available snapshots or backups by id (they have no name)."""
        if isinstance(ref, bool) or not isinstance(ref, str | int):
            return []
        if isinstance(ref, str) and ref.isdigit() and decimal_id(ref) is None:
            return []  # digits that are no id (other scripts, too long): no image has that name
        ref_id = ref if isinstance(ref, int) else decimal_id(ref)
        own = self.images.get(ref_id) if ref_id is not None else None
        if own is not None and own.project == project and own.status == "available":
            return [own]
        return list(catalog.find_images(ref))

    def list_images(self, project: str, query: Query) -> JSON:
        with self.lock:
            self.advance()
            names = query.get("name", [])
            types = set(query.get("type", []))
            unknown = types - set(IMAGE_TYPES)
            if unknown:
                raise invalid_input({"type": [f"must be one of {', '.join(IMAGE_TYPES)}"]})
            architectures = set(query.get("architecture", []))
            statuses = set(query.get("status", []))
            for name, values, allowed in (
                ("architecture", architectures, {"x86", "arm"}),
                ("status", statuses, {"available", "creating", "unavailable"}),
            ):
                if values - allowed:
                    raise invalid_input({name: [f"must be one of {', '.join(sorted(allowed))}"]})
            bound = set(query.get("bound_to", []))
            include_deprecated = bool_param(query.get("include_deprecated", []), "include_deprecated", False)
            matches = self._selector(query)
            candidates: list[ImageRecord] = [*catalog.IMAGES, *self._project_images(project)]
            items = [
                img
                for img in candidates
                if (not names or (isinstance(img, catalog.Image) and img.name == names[-1]))
                and (not types or _kind(img) in types)
                and (not architectures or img.architecture in architectures)
                and (not statuses or _status(img) in statuses)
                and (not bound or (isinstance(img, ProjectImage) and str(img.bound_to) in bound))
                and (include_deprecated or isinstance(img, ProjectImage) or img.deprecated is None)
                and matches(img.labels)
            ]
            items = sort_items(
                sorted(items, key=lambda i: i.id),
                query.get("sort", []),
                {
                    "id": lambda x: x.id,
                    "name": lambda x: (x.name if isinstance(x, catalog.Image) else "", x.id),
                    "created": lambda x: (_created(x), x.id),
                },
            )
            page, meta = paginate(items, query)
            return {"images": [img.to_json() for img in page], "meta": meta}

    def get_image(self, project: str, image_id: int) -> JSON:
        with self.lock:
            self.advance()
            own = self._own_image(project, image_id, required=False)
            if own is not None:
                return {"image": own.to_json()}
            found = catalog.find_images(image_id)
            if not found:
                raise not_found("image")
            return {"image": found[0].to_json()}

    def _own_image(self, project: str, image_id: int, required: bool = True) -> ProjectImage | None:
        image = self.images.get(image_id)
        if image is None or image.project != project:
            if required:
                if catalog.find_images(image_id):
                    raise ApiError("forbidden", "system images cannot be changed or deleted")
                raise not_found("image")
            return None
        return image

    def update_image(self, project: str, image_id: int, body: Any) -> JSON:
        body = require_object(body)
        with self.lock:
            self.advance()
            image = self._own_image(project, image_id)
            assert image is not None
            problems: dict[str, list[str]] = {}
            if "description" in body and not isinstance(body["description"], str):
                problems["description"] = ["must be a string"]
            if "type" in body and body["type"] != "snapshot":
                problems["type"] = ["can only be snapshot (a backup becomes a snapshot)"]
            check_labels(body, problems)
            raise_if(problems)
            if "description" in body:
                image.description = body["description"]
            if body.get("type") == "snapshot":
                image.type, image.bound_to = "snapshot", None
            if body.get("labels") is not None:
                image.labels = dict(body["labels"])
            self.changed = True
            return {"image": image.to_json()}

    def delete_image(self, project: str, image_id: int) -> None:
        with self.lock:
            self.advance()
            image = self._own_image(project, image_id)
            assert image is not None
            if image.protect_delete:
                raise ApiError("protected", "image deletion is protected")
            if image.status == "creating":
                raise ApiError("locked", "cannot perform operation because image is being created")
            self._drop_image(image)

    def _drop_image(self, image: ProjectImage) -> None:
        del self.images[image.id]
        self.changed = True
        if self.nodes is not None:
            self.nodes.delete_image(image.id)

    def change_image_protection(self, project: str, image_id: int, body: Any) -> JSON:
        body = require_object(body)
        with self.lock:
            self.advance()
            image = self._own_image(project, image_id)
            assert image is not None
            if "delete" in body and not isinstance(body["delete"], bool):
                raise invalid_input({"delete": ["must be a boolean"]})
            if "delete" in body:
                image.protect_delete = body["delete"]
            action = self._image_action("change_protection", image)
            return {"action": action.to_json(time.monotonic())}

    def _image_action(self, command: str, image: ProjectImage) -> Action:
        """An action on an image alone: done at once (its change is already applied)."""
        action = Action(
            id=self.next_action_id,
            command=command,
            project=image.project,
            server_id=0,  # no server has id 0: the action locks none
            started=time.time(),
            duration=0.0,
            resources=[{"id": image.id, "type": "image"}],
        )
        self.next_action_id += 1
        self.actions[action.id] = action
        action.status, action.finished = "success", action.started
        self.changed = True
        return action

    def image_actions(self, project: str, image_id: int | None, query: Query) -> JSON:
        with self.lock:
            self.advance()
            if image_id is not None:
                self._own_image(project, image_id)
            try:
                ids = {int(v) for v in query.get("id", [])}
            except ValueError:
                raise invalid_input({"id": ["must be integers"]}) from None
            items = [
                a
                for a in self.actions.values()
                if a.project == project
                and (not ids or a.id in ids)
                and any(
                    r["type"] == "image" and (image_id is None or r["id"] == image_id) for r in a.resources
                )
            ]
            return self._list_actions(items, query)

    def get_image_action(self, project: str, action_id: int, image_id: int | None) -> JSON:
        with self.lock:
            self.advance()
            if image_id is not None:
                self._own_image(project, image_id)
            action = self.actions.get(action_id)
            if (
                action is None
                or action.project != project
                or not any(
                    r["type"] == "image" and (image_id is None or r["id"] == image_id)
                    for r in action.resources
                )
            ):
                raise not_found("action")
            return {"action": action.to_json(time.monotonic())}
