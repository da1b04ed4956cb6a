package g711

// The tables are computed once from the G.711 segment rules: decode tables
// have one entry per code; encode tables are indexed by the int16 sample as
// unsigned, whole for µ-law and by its top 13 bits for A-law (whose encoder
// ignores the 3 low bits).
var (
	ulawDec [256]int16
	alawDec [256]int16
	ulawEnc [1 << 16]byte
	alawEnc [1 << 13]byte
)

const (
	ulawBias = 0x84 // 132, added before the segment search
	ulawClip = 32635
)

func init() {
	for i := range ulawEnc {
		ulawEnc[i] = ulawFromLinear(int16(uint16(i)))
	}
	for i := range alawEnc {
		alawEnc[i] = alawFromLinear(int16(uint16(i) << 3))
	}
	for i := range 256 {
		ulawDec[i] = ulawToLinear(byte(i))
		alawDec[i] = alawToLinear(byte(i))
	}
}

// ulawFromLinear encodes one sample (ITU-T G.711 table 2a).
func ulawFromLinear(s int16) byte {
	v := int(s)
	sign := 0
	if v < 0 {
		v = -v
		sign = 0x80
	}
	if v > ulawClip {
		v = ulawClip
	}
	v += ulawBias
	exp := 7
	for mask := 0x4000; v&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := (v >> (exp + 3)) & 0x0F
	return ^byte(sign | exp<<4 | mant)
}

// ulawToLinear decodes one µ-law code.
func ulawToLinear(c byte) int16 {
	c = ^c
	exp := int(c>>4) & 0x07
	mant := int(c & 0x0F)
	v := ((mant << 3) + ulawBias) << exp
	v -= ulawBias
	if c&0x80 != 0 {
		return int16(-v)
	}
	return int16(v)
}

// alawFromLinear encodes one sample (ITU-T G.711 table 1a).
func alawFromLinear(s int16) byte {
	v := int(s) >> 3 // 13-bit magnitude domain
	sign := 0x80
	if v < 0 {
		v = -v - 1
		sign = 0
	}
	var c int
	if v < 32 {
		c = v >> 1
	} else {
		exp := 1
		for t := v >> 5; t > 1 && exp < 7; t >>= 1 {
			exp++
		}
		c = exp<<4 | (v>>exp)&0x0F
	}
	return byte(sign|c) ^ 0x55
}

// alawToLinear decodes one A-law code.
func alawToLinear(c byte) int16 {
	c ^= 0x55
	exp := int(c>>4) & 0x07
	mant := int(c & 0x0F)
	var v int
	if exp == 0 {
		v = mant<<4 + 8
	} else {
		v = (mant<<4 + 0x108) << (exp - 1)
	}
	if c&0x80 == 0 {
		return int16(-v)
	}
	return int16(v)
}
