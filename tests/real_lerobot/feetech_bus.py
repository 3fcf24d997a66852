"""Six Feetech STS3215 servos behind a pseudo-terminal: the hardware stand-in of the LeRobot contract suite.

LeRobot's `SOFollower`, its `FeetechMotorsBus`, Feetech's `scservo_sdk` and pyserial run unmodified: they open
`bus.port` as they would open a USB serial adapter. A thread on the other end of the pty parses the Feetech
(SCS protocol 0) instruction packets they send, answers PING / READ / WRITE / SYNC_READ / SYNC_WRITE from a
register table per servo (STS3215 memory map, below), moves a servo's present position to its goal while its
torque is on, and records every Goal_Position write. Faults of a real bus on demand, counted per operation: a seeded
share of the replies to the step's joint reads, to the reads LeRobot's send path makes (with `max_relative_target`)
or to pings dropped (`drop`: "There is no status packet", lerobot#1252), the next few of them left unanswered
(`leave_unanswered`: a flaky bus while LeRobot connects), the servos falling silent (`silence`), the adapter
unplugged (`unplug`: the pty's far end closed, so every transfer fails as on a vanished USB device). A reply left
unanswered costs LeRobot its own packet timeout, as on a real bus; one that is coming is waited for longer
(`patient`), so LeRobot sees a fault exactly where one was injected.
"""

from __future__ import annotations

import functools
import os
import random
import select
import threading
import tty
from collections import Counter

# STS3215 memory map (Feetech datasheet): address of each register this stand-in gives meaning to.
FIRMWARE_MAJOR, FIRMWARE_MINOR, MODEL_NUMBER, SERVO_ID = 0, 1, 3, 5
MIN_POSITION_LIMIT, MAX_POSITION_LIMIT, HOMING_OFFSET = 9, 11, 31
TORQUE_ENABLE, GOAL_POSITION, PRESENT_POSITION = 40, 42, 56
STS3215 = 777  # model number
PING, READ, WRITE, SYNC_READ, SYNC_WRITE = 0x01, 0x02, 0x03, 0x82, 0x83
BROADCAST = 0xFE
# Feetech's SDK gives a servo LeRobot's 50 ms to answer. A real servo answers within a millisecond; the stand-in is a
# Python thread that must win the GIL from LeRobot's busy-polling read loop, the cameras' threads and the model, on a
# loaded 2-core CI machine: it has missed 50 ms there ("There is no status packet!"). A reply it is going to send
# gets this much more time (one it leaves unanswered does not: `SimulatedFeetechBus.timed_out`).
MARGIN_MS = 500.0


def checksum(body: bytes) -> int:
    return ~sum(body) & 0xFF


def sign_magnitude(value: int, sign_bit: int) -> int:
    return (-value | (1 << sign_bit)) if value < 0 else value


class SimulatedFeetechBus:
    """Servos 1..6 on `self.port`. `calibration` (motor id -> (homing_offset, range_min, range_max)) is what their
    EEPROM holds, as after `lerobot-calibrate`; `positions` (id -> raw 0..4095) where the joints rest."""

    serving: dict[str, SimulatedFeetechBus] = {}  # port -> the open bus with servos on it (see `patient`)

    def __init__(self, calibration: dict[int, tuple[int, int, int]], positions: dict[int, int]):
        self.registers = {servo: bytearray(256) for servo in positions}
        for servo, memory in self.registers.items():
            memory[FIRMWARE_MAJOR], memory[FIRMWARE_MINOR] = 3, 10
            self._put(servo, MODEL_NUMBER, STS3215)
            memory[SERVO_ID] = servo
            offset, low, high = calibration.get(servo, (0, 0, 4095))
            self._put(servo, HOMING_OFFSET, sign_magnitude(offset, 11))
            self._put(servo, MIN_POSITION_LIMIT, low)
            self._put(servo, MAX_POSITION_LIMIT, high)
            self._put(servo, PRESENT_POSITION, positions[servo])
            self._put(servo, GOAL_POSITION, positions[servo])
        self.goal_writes: list[dict[int, int]] = []  # one {servo: raw goal} per Goal_Position write
        self.drop_share, self.drop_from, self.silent, self._rng = 0.0, 0, False, random.Random(0)
        self.drop_of: tuple[str, ...] = ()
        self.unanswered: Counter[str] = Counter()  # operation -> replies still to leave unsent
        self.dropped_by: Counter[str] = Counter()  # operation -> replies left unsent
        self._waits_to_end = 0  # replies left unsent that LeRobot has not yet stopped waiting for
        self._read_since_goal = False  # a sync read was answered since the last Goal_Position write
        self.lock = threading.Lock()
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.port = os.ttyname(slave)
        self._slave = slave  # kept open so the pty lives between the robot's open/close cycles
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="feetech-bus", daemon=True)
        self._thread.start()
        if self.registers:
            self.serving[self.port] = self

    # --- what the test inspects ---

    def read(self, servo: int, address: int, size: int = 2) -> int:
        with self.lock:
            return int.from_bytes(self.registers[servo][address : address + size], "little")

    def torque_on(self, servo: int) -> bool:
        return bool(self.read(servo, TORQUE_ENABLE, 1))

    @property
    def dropped(self) -> int:
        """Replies left unsent, whatever their operation (a silent bus's included)."""
        return sum(self.dropped_by.values())

    def drop(self, share: float, seed: int = 0, after_goals: int = 0, of: tuple[str, ...] = ("read",)) -> None:
        """Leave `share` of the replies to the operations `of` unsent, seeded, once `after_goals` more Goal_Position
        writes of every servo have come (0: from now on). Operations, as the servos can tell them apart: "read" a
        step's joint read (the first sync read answered after a Goal_Position write, or a single-servo read), "write"
        the read LeRobot's send path makes before writing (`max_relative_target`: a further sync read before the
        next Goal_Position write), "ping"."""
        self.drop_share, self.drop_of, self._rng = share, of, random.Random(seed)
        self.drop_from = sum(len(g) == len(self.registers) for g in self.goal_writes) + after_goals

    def leave_unanswered(self, count: int, of: str) -> None:
        """Leave the next `count` replies to operation `of` (see `drop`) unsent."""
        self.unanswered[of] += count

    def silence(self) -> None:
        """The servos stop answering (their power failed; the USB adapter stays)."""
        self.silent = True

    def unplug(self) -> None:
        """The USB adapter is pulled: the far end of the pty closes and every read and write on the port fails."""
        self._stop.set()
        self._thread.join(2)
        os.close(self.master)
        self.master = None

    def close(self) -> None:
        self.serving.pop(self.port, None)
        self._stop.set()
        self._thread.join(2)
        if self.master is not None:
            os.close(self.master)
        os.close(self._slave)

    # --- the servos ---

    def _put(self, servo: int, address: int, value: int, size: int = 2) -> None:
        self.registers[servo][address : address + size] = value.to_bytes(size, "little")

    def _write(self, servo: int, address: int, data: bytes) -> None:
        memory = self.registers[servo]
        memory[address : address + len(data)] = data
        moved = address <= GOAL_POSITION < address + len(data)
        if moved and memory[TORQUE_ENABLE]:  # position control: the joint reaches a new goal before the next read
            memory[PRESENT_POSITION : PRESENT_POSITION + 2] = memory[GOAL_POSITION : GOAL_POSITION + 2]

    def _status(self, servo: int, params: bytes = b"") -> bytes:
        body = bytes([servo, len(params) + 2, 0]) + params
        return b"\xff\xff" + body + bytes([checksum(body)])

    def timed_out(self, port_handler) -> bool:
        """The Feetech SDK's `isPacketTimeout` for a transfer on this bus: past LeRobot's packet timeout where this
        bus left the reply unanswered (as a real bus would), past it and `MARGIN_MS` where the reply is coming."""
        elapsed = port_handler.getTimeSinceStart()
        if elapsed <= port_handler.packet_timeout:
            return False
        with self.lock:
            if self._waits_to_end:  # transfers are sequential: the one waiting is the one left unanswered
                self._waits_to_end -= 1
                return True
        return elapsed > port_handler.packet_timeout + MARGIN_MS

    def _unanswered(self, operation: str) -> bytes:
        self.dropped_by[operation] += 1
        self._waits_to_end += 1
        return b""

    def _handle(self, servo: int, instruction: int, params: bytes) -> bytes:
        """The reply bytes to one instruction packet (nothing for broadcasts and absent servos)."""
        with self.lock:
            if instruction == SYNC_WRITE:  # address, size, then (id, data) per servo; no reply
                address, size = params[0], params[1]
                goals = {}
                for at in range(2, len(params), size + 1):
                    target = params[at]
                    if target in self.registers:
                        self._write(target, address, params[at + 1 : at + 1 + size])
                        if address == GOAL_POSITION:
                            goals[target] = int.from_bytes(params[at + 1 : at + 3], "little")
                if goals:
                    self.goal_writes.append(goals)
                    self._read_since_goal = False
                return b""
            operation = {PING: "ping", READ: "read", SYNC_READ: "write" if self._read_since_goal else "read"}.get(
                instruction)
            if self.silent:
                return self._unanswered("silent")
            if operation and self.unanswered[operation]:
                self.unanswered[operation] -= 1
                return self._unanswered(operation)
            goals = sum(len(g) == len(self.registers) for g in self.goal_writes)
            if operation in self.drop_of and goals >= self.drop_from and self._rng.random() < self.drop_share:
                return self._unanswered(operation)
            if instruction == SYNC_READ:  # address, size, ids: every servo answers in turn
                address, size = params[0], params[1]
                self._read_since_goal = True
                return b"".join(self._status(t, bytes(self.registers[t][address : address + size]))
                                for t in params[2:] if t in self.registers)
            if servo == BROADCAST or servo not in self.registers:
                return b""
            if instruction == PING:
                return self._status(servo)
            if instruction == READ:
                address, size = params[0], params[1]
                return self._status(servo, bytes(self.registers[servo][address : address + size]))
            if instruction == WRITE:
                self._write(servo, params[0], params[1:])
                if params[0] == GOAL_POSITION:
                    self.goal_writes.append({servo: int.from_bytes(params[1:3], "little")})
                return self._status(servo)
        return b""

    def _serve(self) -> None:
        buffer = bytearray()
        while not self._stop.is_set():
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            try:
                buffer += os.read(self.master, 4096)
            except OSError:
                return
            while True:  # every complete packet in the buffer: FF FF id length instruction params checksum
                start = buffer.find(b"\xff\xff")
                if start < 0 or len(buffer) < start + 4:
                    break
                length = buffer[start + 3]
                end = start + 4 + length
                if len(buffer) < end:
                    break
                body, received = bytes(buffer[start + 2 : end - 1]), buffer[end - 1]
                del buffer[:end]
                if len(body) < 3 or checksum(body) != received:  # a servo ignores corrupt packets
                    continue
                reply = self._handle(body[0], body[2], body[3:])
                if reply:
                    os.write(self.master, reply)


def patient(lerobots):
    """LeRobot's `feetech.patch_setPacketTimeout` (`lerobots`, which each bus binds to its port handler) with the
    port handler of a stand-in bus timing out by `SimulatedFeetechBus.timed_out`; for the suite (conftest) and the
    benchmark."""

    def set_packet_timeout(port_handler, packet_length):  # noqa: N802 - the SDK's name
        lerobots(port_handler, packet_length)
        bus = SimulatedFeetechBus.serving.get(port_handler.port_name)
        if bus is not None:
            port_handler.isPacketTimeout = functools.partial(bus.timed_out, port_handler)

    return set_packet_timeout
