"""Six Feetech STS3215 servos behind a pseudo-terminal: the hardware stand-in of the LeRobot contract suite.

LeRobot's `SOFollower`, its `FeetechMotorsBus`, Feetech's `scservo_sdk` and pyserial run unmodified: they open
`bus.port` as they would open a USB serial adapter. A thread on the other end of the pty parses the Feetech
(SCS protocol 0) instruction packets they send, answers PING / READ / WRITE / SYNC_READ / SYNC_WRITE from a
register table per servo (STS3215 memory map, below), moves a servo's present position to its goal while its
torque is on, and records every Goal_Position write. Faults of a real bus on demand: a seeded share of read replies
dropped (`drop`: "There is no status packet", lerobot#1252), the servos falling silent (`silence`), the adapter
unplugged (`unplug`: the pty's far end closed, so every transfer fails as on a vanished USB device).
"""

from __future__ import annotations

import os
import random
import select
import threading
import tty

# STS3215 memory map (Feetech datasheet): address of each register this stand-in gives meaning to.
FIRMWARE_MAJOR, FIRMWARE_MINOR, MODEL_NUMBER, SERVO_ID = 0, 1, 3, 5
MIN_POSITION_LIMIT, MAX_POSITION_LIMIT, HOMING_OFFSET = 9, 11, 31
TORQUE_ENABLE, GOAL_POSITION, PRESENT_POSITION = 40, 42, 56
STS3215 = 777  # model number
PING, READ, WRITE, SYNC_READ, SYNC_WRITE = 0x01, 0x02, 0x03, 0x82, 0x83
BROADCAST = 0xFE


def checksum(body: bytes) -> int:
    return ~sum(body) & 0xFF


def sign_magnitude(value: int, sign_bit: int) -> int:
    return (-value | (1 << sign_bit)) if value < 0 else value


class SimulatedFeetechBus:
    """Servos 1..6 on `self.port`. `calibration` (motor id -> (homing_offset, range_min, range_max)) is what their
    EEPROM holds, as after `lerobot-calibrate`; `positions` (id -> raw 0..4095) where the joints rest."""

    answering: set[str] = set()  # ports of the open buses that have servos (see conftest's patient_servo_timeout)

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
        self.drop_share, self.drop_from, self.dropped, self.silent, self._rng = 0.0, 0, 0, False, random.Random(0)
        self.lock = threading.Lock()
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.port = os.ttyname(slave)
        self._slave = slave  # kept open so the pty lives between the robot's open/close cycles
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="feetech-bus", daemon=True)
        self._thread.start()
        if self.registers:
            self.answering.add(self.port)

    # --- what the test inspects ---

    def read(self, servo: int, address: int, size: int = 2) -> int:
        with self.lock:
            return int.from_bytes(self.registers[servo][address : address + size], "little")

    def torque_on(self, servo: int) -> bool:
        return bool(self.read(servo, TORQUE_ENABLE, 1))

    def drop(self, share: float, seed: int = 0, after_goals: int = 0) -> None:
        """Leave `share` of the read replies (READ, SYNC_READ) unsent, seeded, once `after_goals` more Goal_Position
        writes of every servo have come (0: from now on); `dropped` counts them."""
        self.drop_share, self._rng = share, random.Random(seed)
        self.drop_from = sum(len(g) == len(self.registers) for g in self.goal_writes) + after_goals

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
        self.answering.discard(self.port)
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
                return b""
            dropping = self.drop_share and sum(len(g) == len(self.registers) for g in self.goal_writes) >= self.drop_from
            if dropping:  # LeRobot's own 50 ms per packet from now on (patient while it connected: conftest)
                self.answering.discard(self.port)
            if self.silent or instruction in (READ, SYNC_READ) and dropping and self._rng.random() < self.drop_share:
                self.dropped += 1
                return b""
            if instruction == SYNC_READ:  # address, size, ids: every servo answers in turn
                address, size = params[0], params[1]
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
