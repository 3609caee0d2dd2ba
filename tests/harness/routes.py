"""The API's route table as declared, without a hub: for tests about what routes declare."""

from __future__ import annotations

from actors.api import ApiPeers, api_routes
from actors.frames import FrameDirectory
from actors.http import ApiRoute
from supervision import ActorRef, ChildDirectory


def declared_api_routes() -> tuple[ApiRoute, ...]:
    """Every API route beyond the gateway's own, built with refs to actors never started."""
    unstarted = ActorRef.declare
    return api_routes(
        ApiPeers(
            uploader=unstarted(),
            album=unstarted(),
            media=unstarted(),
            devices=unstarted(),
            fleet=unstarted(),
            frames=FrameDirectory(ChildDirectory(unstarted())),
            ota=unstarted(),
            telemetry=unstarted(),
            notifier=unstarted(),
            mqtt=unstarted(),
            console=unstarted(),
        )
    )
